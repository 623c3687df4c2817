package main

import (
	"context"
	"fmt"
	"net/netip"
	"strings"

	"github.com/spf13/cobra"

	"github.com/weavelab/weave/router/api"
)

// dnsArgs parses `[IP...] CONTAINER [-h FQDN] | IP... -h FQDN`.
func dnsArgs(cmd string, args []string, fqdn string) (api.DNSRequest, error) {
	usage := fmt.Errorf("usage: weave %s [IP...] CONTAINER [-h FQDN] | IP... -h FQDN", cmd)
	if len(args) == 0 {
		return api.DNSRequest{}, usage
	}
	req := api.DNSRequest{FQDN: fqdn}
	ips := args
	if _, err := netip.ParseAddr(args[len(args)-1]); err != nil {
		req.Container = args[len(args)-1]
		ips = args[:len(args)-1]
	} else if fqdn == "" {
		return api.DNSRequest{}, fmt.Errorf("weave %s: addresses without a container need -h FQDN", cmd)
	}
	for _, s := range ips {
		ip, err := netip.ParseAddr(s)
		if err != nil {
			return api.DNSRequest{}, fmt.Errorf("weave %s: %q is not an IP address", cmd, s)
		}
		req.IPs = append(req.IPs, ip.String())
	}
	return req, nil
}

func (a *app) dnsAddCommand() *cobra.Command { return a.dnsChangeCommand("dns-add") }

func (a *app) dnsRemoveCommand() *cobra.Command { return a.dnsChangeCommand("dns-remove") }

func (a *app) dnsChangeCommand(name string) *cobra.Command {
	var fqdn string
	short := "register a name in weaveDNS: the container's addresses (or the IPs given) under its hostname (or FQDN)"
	if name == "dns-remove" {
		short = "remove names from weaveDNS: a container's (all, or that FQDN or those IPs), or IP... -h FQDN"
	}
	cmd := &cobra.Command{
		Use:   name + " [IP...] CONTAINER [-h FQDN] | IP... -h FQDN",
		Short: short,
		RunE: func(cmd *cobra.Command, args []string) error {
			req, err := dnsArgs(name, args, fqdn)
			if err != nil {
				return err
			}
			return a.call(cmd, func(ctx context.Context, c *api.Client) error {
				if name == "dns-add" {
					_, err = c.DNSAdd(ctx, req)
				} else {
					_, err = c.DNSRemove(ctx, req)
				}
				return err
			})
		},
	}
	cmd.Flags().StringVarP(&fqdn, "hostname", "h", "", "the fully qualified name")
	cmd.Flags().Bool("help", false, "help for "+name)
	return cmd
}

func (a *app) dnsLookupCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "dns-lookup NAME",
		Short: "print the addresses weaveDNS has for NAME, one a line",
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return fmt.Errorf("usage: weave dns-lookup NAME")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			var ips []string
			if err := a.call(cmd, func(ctx context.Context, c *api.Client) (err error) {
				ips, err = c.DNSLookup(ctx, args[0])
				return err
			}); err != nil {
				return err
			}
			if len(ips) == 0 {
				return fmt.Errorf("weave dns-lookup: %s: no such name", args[0])
			}
			_, err := fmt.Fprintln(a.stdout, strings.Join(ips, "\n"))
			return err
		},
	}
}
