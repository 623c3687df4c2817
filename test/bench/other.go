//go:build !linux

package main

import (
	"context"
	"errors"
	"log/slog"
)

const lanMTU = 1500

// runScenarios needs Linux network namespaces.
func runScenarios(context.Context, config, *slog.Logger) ([]result, error) {
	return nil, errors.New("the benchmark builds Linux network namespaces: run it on Linux")
}
