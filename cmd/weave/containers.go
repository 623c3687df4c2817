package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/weavelab/weave/router/api"
)

func (a *app) attachCommand() *cobra.Command {
	var withoutDNS bool
	cmd := &cobra.Command{
		Use:   "attach [--without-dns] [ADDR...] CONTAINER",
		Short: "attach a container and print its addresses",
		Long: "ADDR is CIDR | ip:CIDR | net:CIDR | net:default (no ADDR: one address from net:default);\n" +
			"CONTAINER is a Docker container name or ID, netns:NAME (a namespace under /var/run/netns),\n" +
			"netns:PATH or pid:N.",
		Args: minArgs(1, "attach [--without-dns] [ADDR...] CONTAINER"),
		RunE: func(cmd *cobra.Command, args []string) error {
			addrs, container := args[:len(args)-1], args[len(args)-1]
			var got []string
			if err := a.call(cmd, func(ctx context.Context, c *api.Client) (err error) {
				got, err = c.AttachOpts(ctx, container, addrs, withoutDNS)
				return err
			}); err != nil {
				return err
			}
			return a.printAddrs(got)
		},
	}
	cmd.Flags().BoolVar(&withoutDNS, "without-dns", false, "do not point the container's resolver at weaveDNS")
	return cmd
}

func (a *app) detachCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "detach [ADDR...] CONTAINER",
		Short: "remove addresses from a container, or (with none) take it off the network",
		Args:  minArgs(1, "detach [ADDR...] CONTAINER"),
		RunE: func(cmd *cobra.Command, args []string) error {
			addrs, container := args[:len(args)-1], args[len(args)-1]
			return a.call(cmd, func(ctx context.Context, c *api.Client) error {
				return c.Detach(ctx, container, addrs)
			})
		},
	}
}

func (a *app) psCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "ps [CONTAINER...]",
		Short: "list attached containers: ID MAC IP/prefix...",
		Long: "Lists the containers weave attached (weave run, attach, the proxy, CNI pods; weave:expose for\n" +
			"the host's own addresses) and those on Docker networks of weave's plugin: one line per\n" +
			"interface, so a container on both has a line for each. CONTAINER is a Docker container name\n" +
			"or ID, netns:NAME, netns:PATH or pid:N.",
		RunE: func(cmd *cobra.Command, args []string) error {
			var cs []api.Container
			if err := a.call(cmd, func(ctx context.Context, c *api.Client) (err error) {
				cs, err = c.PS(ctx, args)
				return err
			}); err != nil {
				return err
			}
			return api.FormatContainers(a.stdout, cs)
		},
	}
}

func (a *app) exposeCommand() *cobra.Command {
	var fqdn string
	cmd := &cobra.Command{
		Use:   "expose [ADDR...] [-h FQDN]",
		Short: "give this host addresses on the weave network and print them",
		RunE: func(cmd *cobra.Command, addrs []string) error {
			var got []string
			if err := a.call(cmd, func(ctx context.Context, c *api.Client) (err error) {
				if got, err = c.Expose(ctx, addrs); err != nil || fqdn == "" {
					return err
				}
				ips := make([]string, len(got))
				for i, p := range got {
					ips[i], _, _ = strings.Cut(p, "/")
				}
				_, err = c.DNSAdd(ctx, api.DNSRequest{IPs: ips, FQDN: fqdn, Container: exposeID})
				return err
			}); err != nil {
				return err
			}
			return a.printAddrs(got)
		},
	}
	// -h is the hostname, as in Weave; help stays on --help (defined here
	// so that cobra does not try to give it the -h shorthand).
	cmd.Flags().StringVarP(&fqdn, "hostname", "h", "", "register the host's addresses in weaveDNS under this name")
	cmd.Flags().Bool("help", false, "help for expose")
	return cmd
}

// exposeID is the container the host's own names are registered under.
const exposeID = "weave:expose"

func (a *app) hideCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "hide [ADDR...]",
		Short: "remove this host's addresses (all when none given) from the weave network",
		RunE: func(cmd *cobra.Command, addrs []string) error {
			return a.call(cmd, func(ctx context.Context, c *api.Client) error {
				return c.Hide(ctx, addrs)
			})
		},
	}
}

// printAddrs prints the addresses without prefix length, space separated,
// as Weave's attach and expose do.
func (a *app) printAddrs(addrs []string) error {
	ips := make([]string, len(addrs))
	for i, s := range addrs {
		ip, _, _ := strings.Cut(s, "/")
		ips[i] = ip
	}
	_, err := fmt.Fprintln(a.stdout, strings.Join(ips, " "))
	return err
}
