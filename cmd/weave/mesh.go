package main

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/weavelab/weave/router/api"
	"github.com/weavelab/weave/router/daemon"
)

func (a *app) connectCommand() *cobra.Command {
	var replace bool
	cmd := &cobra.Command{
		Use:   "connect [--replace] PEER...",
		Short: "add peers (host[:port]) for the router to connect to",
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 && !replace {
				return fmt.Errorf("usage: weave connect [--replace] PEER... (--replace with no peers clears the targets)")
			}
			peers, err := daemon.ParsePeers(args)
			if err != nil {
				return err
			}
			return a.call(cmd, func(ctx context.Context, c *api.Client) error {
				return c.Connect(ctx, peers, replace)
			})
		},
	}
	cmd.Flags().BoolVar(&replace, "replace", false, "replace all targets with these peers")
	return cmd
}

func (a *app) forgetCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "forget PEER...",
		Short: "stop connecting to peers (host[:port])",
		Args:  minArgs(1, "forget PEER..."),
		RunE: func(cmd *cobra.Command, args []string) error {
			peers, err := daemon.ParsePeers(args)
			if err != nil {
				return err
			}
			return a.call(cmd, func(ctx context.Context, c *api.Client) error {
				return c.Forget(ctx, peers)
			})
		},
	}
}

func (a *app) statusCommand() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "status [peers | connections | targets | ipam] [--json]",
		Short: "show the router's status, or one section of it",
		Long: "Show the router's status: a summary (name, encryption, discovery, port, MTU and counts), or\n" +
			"one section: peers (the mesh as gossip tells it), connections (ours, with state, reason and\n" +
			"data-plane counters), targets (the addresses given by launch and connect) or ipam (the\n" +
			"address allocator: range, state, each peer's share). --json prints the same as JSON. The\n" +
			"section dns comes with weaveDNS, which this version does not have yet.",
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) > 1 {
				return fmt.Errorf("usage: weave status [peers | connections | targets | ipam] [--json]")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			section := ""
			if len(args) == 1 {
				section = args[0]
			}
			if err := api.CheckSection(section); err != nil {
				return err
			}
			var st api.Status
			if err := a.call(cmd, func(ctx context.Context, c *api.Client) (err error) {
				st, err = c.Status(ctx)
				return err
			}); err != nil {
				return err
			}
			if asJSON {
				v, err := api.Section(st, section)
				if err != nil {
					return err
				}
				return a.printJSON(v)
			}
			return api.FormatStatus(a.stdout, st, section)
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func (a *app) reportCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "report",
		Short: "print everything the router knows as one JSON document",
		Args:  noArgs("report"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			var rep json.RawMessage
			if err := a.call(cmd, func(ctx context.Context, c *api.Client) (err error) {
				rep, err = c.Report(ctx)
				return err
			}); err != nil {
				return err
			}
			return a.printJSON(rep)
		},
	}
}

func (a *app) printJSON(v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("encode JSON: %w", err)
	}
	_, err = fmt.Fprintf(a.stdout, "%s\n", b)
	return err
}
