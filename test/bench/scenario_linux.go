package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"slices"
	"time"
)

// runScenarios builds the lab (when a data-path scenario is selected),
// runs each selected scenario (set up, measure, tear down) and removes the
// lab. The data-path scenarios run first, cfg.rounds times in rotation so
// that each sees the same spells of the machine's other work, and each
// gets one row of medians (see mergeRounds); then the others, once each. A
// failing scenario gets its error in its row and the others still run;
// the error returned is for the lab itself or an interruption.
func runScenarios(ctx context.Context, cfg config, log *slog.Logger) ([]result, error) {
	undo := newCleanups(log)
	defer undo.run()
	var l *lab
	var tmp string
	if cfg.needsLab() {
		var err error
		if l, err = newLab(ctx, log, undo); err != nil {
			return nil, fmt.Errorf("building the lab: %w", err)
		}
		tmp = l.tmp
		log.Info("lab ready", "hosts", l.hosts[0].name+" "+l.hosts[1].name, "lan", lanSubnet+".0/24", "mtu", lanMTU)
	} else {
		var err error
		if tmp, err = os.MkdirTemp("", fmt.Sprintf("wb%d-", os.Getpid())); err != nil {
			return nil, fmt.Errorf("temporary directory: %w", err)
		}
		undo.push("remove "+tmp, func() error { return os.RemoveAll(tmp) })
	}

	weaveBin, binErr := cfg.weaveBin, error(nil)
	if cfg.needsWeave() && weaveBin == "" {
		log.Info("building ./cmd/weave")
		if weaveBin, binErr = buildWeave(ctx, tmp); binErr != nil {
			log.Error("weave scenarios cannot run", "err", binErr)
		}
	}
	wv := weaveBuild{bin: weaveBin, err: binErr}
	if cfg.needsWeave() && binErr == nil {
		if wv.fastDP, wv.err = launchHasFlag(ctx, weaveBin, noFastDPFlag); wv.err != nil {
			log.Error("weave scenarios cannot run", "err", wv.err)
		} else {
			log.Info("weave binary", "path", weaveBin, "fast path", wv.fastDP)
		}
	}

	var wg wireGuardGoBuild
	if slices.Contains(cfg.scenarios, scenarioWireGuardGo) {
		wg = prepareWireGuardGo(ctx, cfg, tmp, log)
	}

	// One round is every selected data-path scenario in turn; runs[i]
	// holds the rows of dataPath[i], one per round.
	dataPath := slices.DeleteFunc(slices.Clone(cfg.scenarios), func(s string) bool { return !isDataPath(s) })
	runs := make([][]result, len(dataPath))
rounds:
	for round := 1; round <= cfg.rounds; round++ {
		for i, name := range dataPath {
			if ctx.Err() != nil {
				break rounds
			}
			res := runLogged(log, name, round, cfg.rounds, func(res *result) error {
				return runScenario(ctx, cfg, l, name, wv, wg, res)
			})
			runs[i] = append(runs[i], res)
		}
	}
	var results []result
	for _, rs := range runs {
		if len(rs) > 0 {
			results = append(results, mergeRounds(rs))
		}
	}

	for _, name := range cfg.scenarios {
		if isDataPath(name) {
			continue
		}
		if ctx.Err() != nil {
			break
		}
		results = append(results, runLogged(log, name, 0, 0, func(res *result) error {
			switch {
			case wv.err != nil:
				return wv.err
			case name == scenarioIPAM:
				return runIPAM(ctx, cfg, log, tmp, weaveBin, res)
			case name == scenarioDNS:
				return runDNS(ctx, cfg, log, tmp, weaveBin, res)
			case name == scenarioProxy:
				return runProxy(ctx, cfg, log, tmp, weaveBin, res)
			}
			return fmt.Errorf("unknown scenario %q", name)
		}))
	}
	if ctx.Err() != nil {
		return results, fmt.Errorf("interrupted: %w", context.Cause(ctx))
	}
	return results, nil
}

// runLogged runs scenario name through run into a new row, logs its start
// and end, and records in the row why it failed or was skipped. Round
// (of rounds) is logged when there are several.
func runLogged(log *slog.Logger, name string, round, rounds int, run func(*result) error) result {
	if rounds > 1 {
		log = log.With("round", fmt.Sprintf("%d/%d", round, rounds))
	}
	res := result{Scenario: name}
	log.Info("scenario start", "scenario", name)
	start := time.Now()
	err := run(&res)
	var skip skipError
	if errors.As(err, &skip) {
		res.Skipped = skip.why
		log.Info("scenario skipped", "scenario", name, "why", skip.why)
	} else if err != nil {
		res.Error = err.Error()
		log.Error("scenario failed", "scenario", name, "err", err)
	} else {
		log.Info("scenario done", "scenario", name, "took", time.Since(start).Round(time.Second))
	}
	return res
}

// weaveBuild is the weave binary the scenarios run, or why there is none.
type weaveBuild struct {
	bin    string
	err    error // building it or asking it for its flags failed
	fastDP bool  // it has the kernel fast path (launch lists --no-fastdp)
}

// skipError says that a scenario cannot run here and why; it is not a
// failure.
type skipError struct{ why string }

func (e skipError) Error() string { return "skipped: " + e.why }

// launchHasFlag reports whether `weave launch --help` lists flag. The help
// only prints: it starts nothing and touches no network.
func launchHasFlag(ctx context.Context, bin, flag string) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, cmdTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, "launch", "--help").CombinedOutput()
	if err != nil {
		return false, fmt.Errorf("%s launch --help: %w: %s", bin, err, lastLines(string(out), 3))
	}
	return helpListsFlag(string(out), flag), nil
}

// runScenario sets one scenario up, measures it into res and tears it
// down, leaving the lab as it found it.
func runScenario(ctx context.Context, cfg config, l *lab, name string, wv weaveBuild, wg wireGuardGoBuild, res *result) error {
	undo := newCleanups(l.log)
	defer l.scrub()
	defer undo.run()
	var ep *endpoints
	var err error
	switch name {
	case scenarioVXLAN:
		ep, err = setupVXLAN(ctx, l, cfg.vxlanMTU, undo)
	case scenarioFastDP, scenarioWeave, scenarioEncrypted, scenarioAESGCM, scenarioNaCl:
		if wv.err != nil {
			return wv.err
		}
		flags, skip := weaveLaunchFlags(name, wv.fastDP)
		if skip != "" {
			return skipError{skip}
		}
		enc, withPassword := encrypted[name]
		password := ""
		if withPassword {
			password = benchPassword
		}
		ep, err = setupWeave(ctx, l, wv.bin, name, password, enc, flags, undo)
	case scenarioWireGuardGo:
		switch {
		case wg.skip != "":
			return skipError{wg.skip}
		case wg.err != nil:
			return wg.err
		}
		ep, err = setupWireGuardGo(ctx, l, wg, undo)
	default:
		err = fmt.Errorf("unknown scenario %q", name)
	}
	if err != nil {
		return err
	}
	res.MTU, res.Cipher, res.Path, res.Software = ep.mtu, ep.cipher, ep.path, ep.software
	err = measureEndpoints(ctx, cfg, l, ep, res)
	if err != nil && ep.diagnose != nil && ctx.Err() == nil {
		err = fmt.Errorf("%w\n%s", err, ep.diagnose())
	}
	return err
}

// scrub deletes every link a scenario left in the lab's namespaces (all
// but lo and the LAN port), so that the next scenario starts clean, and
// logs what it found.
func (l *lab) scrub() {
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	for _, h := range l.hosts {
		for _, n := range []netns{h.netns, h.container} {
			out, err := n.run(ctx, nil, "ip", "-o", "link", "show")
			if err != nil {
				l.log.Warn("scrub: listing links failed", "netns", n.name, "err", err)
				continue
			}
			for _, dev := range linkNames(out) {
				if dev == "lo" || (n == h.netns && dev == lanIf) {
					continue
				}
				l.log.Warn("scenario left a link behind: deleting it", "netns", n.name, "link", dev)
				if err := n.must(ctx, "ip", "link", "del", dev); err != nil && !errors.Is(err, context.Canceled) {
					l.log.Debug("scrub: delete failed (maybe gone with its peer)", "netns", n.name, "link", dev, "err", err)
				}
			}
		}
	}
}
