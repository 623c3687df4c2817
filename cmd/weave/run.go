package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/weavelab/weave/router"
	"github.com/weavelab/weave/router/api"
	"github.com/weavelab/weave/router/docker"
)

const runUsage = "run [--without-dns] [ADDR...] DOCKER-RUN-ARGS..."

func (a *app) runCommand() *cobra.Command {
	return &cobra.Command{
		Use:   runUsage,
		Short: "start a Docker container (docker run -d) and attach it; print its ID",
		Long: "Leading arguments that are ADDR (CIDR | ip:CIDR | net:CIDR | net:default) give its\n" +
			"addresses (default: one from net:default); everything after them goes to `docker run -d`\n" +
			"unchanged (the docker CLI, honouring DOCKER_HOST). When the attach fails the container\n" +
			"is removed again.",
		DisableFlagParsing: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.run(cmd.Context(), args)
		},
	}
}

// splitRunArgs separates weave's own leading arguments of weave run from
// docker's.
func splitRunArgs(args []string) (withoutDNS bool, addrs, dockerArgs []string, err error) {
	i := 0
	for ; i < len(args); i++ {
		s := args[i]
		if s == "--without-dns" {
			withoutDNS = true
			continue
		}
		if s == "--help" || s == "-h" && i == 0 {
			return false, nil, nil, errHelp
		}
		if !looksLikeAddr(s) {
			break
		}
		if _, err := router.ParseAddrSpec(s); err != nil {
			return false, nil, nil, fmt.Errorf("weave run: %w", err)
		}
		addrs = append(addrs, s)
	}
	if i == len(args) {
		return false, nil, nil, fmt.Errorf("usage: weave %s (no image given)", runUsage)
	}
	return withoutDNS, addrs, args[i:], nil
}

var errHelp = errors.New("help")

// looksLikeAddr tells a weave ADDR from docker's first argument (a flag or
// an image): net:..., ip:..., or something with a "/" that starts with a
// digit (an image name cannot start like 10.2.1.4/24... but a registry
// host could, so it must also parse as a prefix).
func looksLikeAddr(s string) bool {
	if strings.HasPrefix(s, "net:") || strings.HasPrefix(s, "ip:") {
		return true
	}
	if s == "" || s[0] < '0' || s[0] > '9' || !strings.Contains(s, "/") {
		return false
	}
	_, err := router.ParseAddrSpec(s)
	return err == nil || !strings.Contains(s, ":")
}

func (a *app) run(ctx context.Context, args []string) error {
	withoutDNS, addrs, dockerArgs, err := splitRunArgs(args)
	if errors.Is(err, errHelp) {
		fmt.Fprintf(a.stdout, "Usage: weave %s\n\n%s\n", runUsage, a.runCommand().Long)
		return nil
	}
	if err != nil {
		return err
	}
	// The router must be there before a container is started for it.
	vctx, cancel := context.WithTimeout(ctx, requestTimeout)
	_, err = a.client().Version(vctx)
	cancel()
	if err != nil {
		return err
	}
	if err := a.checkSubnets(ctx, addrs); err != nil {
		return err
	}
	id, err := docker.Run(ctx, os.Environ(), dockerArgs)
	if err != nil {
		if id != "" {
			a.removeContainer(id)
		}
		return err
	}
	actx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	if _, err := a.client().AttachOpts(actx, id, addrs, withoutDNS); err != nil {
		a.removeContainer(id)
		msg := strings.ReplaceAll(err.Error(), id, docker.ShortID(id))
		return fmt.Errorf("weave run: %s (container %s removed)", msg, docker.ShortID(id))
	}
	_, err = fmt.Fprintln(a.stdout, id)
	return err
}

// checkSubnets refuses net:CIDR subnets that the router's allocation range
// cannot serve before any container is started for them.
func (a *app) checkSubnets(ctx context.Context, addrs []string) error {
	var subnets []netip.Prefix
	for _, s := range addrs {
		if spec, err := router.ParseAddrSpec(s); err == nil && !spec.IsStatic() && !spec.Default {
			subnets = append(subnets, spec.Subnet)
		}
	}
	if len(subnets) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	st, err := a.client().Status(ctx)
	if err != nil {
		return err
	}
	if st.IPAM == nil {
		return nil // the router will say
	}
	rng, err := netip.ParsePrefix(st.IPAM.Range)
	if err != nil {
		return nil
	}
	for _, sn := range subnets {
		if !rng.Contains(sn.Addr()) || sn.Bits() < rng.Bits() {
			return fmt.Errorf("weave run: subnet %s: outside the allocation range %s", sn, rng)
		}
		if sn.Bits() > 30 {
			return fmt.Errorf("weave run: subnet %s: too small to allocate from (at most /30)", sn)
		}
	}
	return nil
}

// removeContainer undoes a weave run whose attach failed.
func (a *app) removeContainer(id string) {
	eng, err := docker.New(slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		a.warn("weave run: could not remove container " + id + ": " + err.Error())
		return
	}
	defer eng.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := eng.Remove(ctx, id); err != nil {
		a.warn("weave run: could not remove container " + id + ": " + err.Error())
	}
}

func (a *app) rmpeerCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "rmpeer PEER...",
		Short: "take over the address space of peers that are gone for good (name or nickname)",
		Args:  minArgs(1, "rmpeer PEER..."),
		RunE: func(cmd *cobra.Command, args []string) error {
			var removed []api.RmPeerResult
			err := a.call(cmd, func(ctx context.Context, c *api.Client) (err error) {
				removed, err = c.RmPeer(ctx, args)
				return err
			})
			for _, r := range removed {
				// A peer that is gone may no longer be in the topology,
				// which is where nicknames come from: then its name alone.
				who := r.Peer.String()
				if r.Peer.NickName == "" {
					who = r.Peer.Name.String()
				}
				fmt.Fprintf(a.stdout, "%d IPs taken over from %s\n", r.Addresses, who)
			}
			return err
		},
	}
}
