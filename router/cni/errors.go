package cni

import (
	"context"
	"errors"

	"github.com/containernetworking/cni/pkg/types"

	"github.com/weavelab/weave/router/api"
)

// Error codes of the CNI spec the plugin returns (types.Err*):
//
//	1  ErrIncompatibleCNIVersion  (the CNI library's version negotiation)
//	4  ErrInvalidEnvironmentVariables  malformed CNI_ARGS, missing CNI_* variables
//	5  ErrIOFailure              the pod's namespace could not be read or changed
//	6  ErrDecodingFailure        the config (or prevResult) is not valid JSON
//	7  ErrInvalidNetworkConfig   the config is JSON but wrong
//	8  ErrInvalidNetNS           CNI_NETNS names no network namespace
//	11 ErrTryAgainLater          the router is not running or did not answer in time
//	50 ErrPluginNotAvailable     STATUS: the router is not running
//	999 ErrInternal              the router refused (its message in details)

// routerError turns an error of the router's API into a CNI error: "try
// again later" when the router is not running or too slow, the router's
// own message otherwise.
func routerError(what string, err error) error {
	var te *types.Error
	if errors.As(err, &te) {
		return te
	}
	if errors.Is(err, api.ErrNotRunning) || errors.Is(err, context.DeadlineExceeded) {
		return types.NewError(types.ErrTryAgainLater, what+": the weave router is not running", err.Error())
	}
	return types.NewError(types.ErrInternal, what, err.Error())
}

// delegateError keeps a delegated plugin's CNI error (its code and
// message) and wraps anything else.
func delegateError(typ string, err error) error {
	var te *types.Error
	if errors.As(err, &te) {
		return te
	}
	return types.NewError(types.ErrInternal, "IPAM plugin "+typ, err.Error())
}
