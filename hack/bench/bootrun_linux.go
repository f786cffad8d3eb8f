package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/vk-applevm/vk-applevm/guest"
	"github.com/vk-applevm/vk-applevm/vm/qemu"
)

// memorySettle is how long a VM idles before its memory is sampled: the
// steady state of an idle VM, after the agent's trim of its free heap one
// second after its last request (agent.DefaultMemoryTrimDelay).
const memorySettle = 2 * time.Second

// benchGuest finds the guest bundle a benchmark boots (with the floor
// initrd when floor is set) and makes every VM of the run use one
// accelerator: vm/qemu's own and the shim's driver alike, TCG unless the
// caller chose.
func benchGuest(o options, floor bool) (guest.Bundle, error) {
	bundle, err := guest.Find(o.guestDir)
	if err == nil && floor && bundle.FloorInitrd == "" {
		err = fmt.Errorf("guest bundle %s has no floor initrd", o.guestDir)
	}
	if err != nil {
		return bundle, fmt.Errorf("%w (run `make guest`)", err)
	}
	if os.Getenv(qemu.AccelEnv) == "" {
		os.Setenv(qemu.AccelEnv, string(qemu.AccelTCG))
	}
	return bundle, nil
}

// The boots with QEMU's own TCG code buffer size (-compare-tcg-buffer).
const (
	floorUncappedName = "floor, QEMU's default TCG code buffer"
	agentUncappedName = "agent, QEMU's default TCG code buffer"
)

// runBoot runs the floor, the agent and the product path in turn, one
// warm-up round and o.rounds measured ones, then the idle floor once.
func runBoot(ctx context.Context, o options, work string, log *slog.Logger) []section {
	bundle, err := benchGuest(o, true)
	if err != nil {
		log.Error("boot benchmarks", "err", err)
		return bootResults{failed: map[string]error{"floor": err, "agent": err, "product": err, "idle floor": err}}.sections()
	}
	quiet := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	bb := &bootBench{keep: o.keep, cmdline: o.cmdline, bundle: bundle, driver: qemu.New(qemu.Options{Logger: quiet}), work: work, memoryMiB: o.memoryMiB, log: log}
	res := bootResults{accel: os.Getenv(qemu.AccelEnv), containerMiB: containerMemory >> 20, extra: map[string][]bootSample{}, failed: map[string]error{}}
	var pb *productBench
	if !o.skip["product"] {
		if pb, err = newProductBench(ctx, o, bundle, work, log); err != nil {
			log.Error("product path setup", "err", err)
			res.failed["product"] = err
		} else {
			defer pb.close(context.WithoutCancel(ctx))
		}
	}

	for _, c := range o.compare {
		res.extraNames = append(res.extraNames, c.name)
	}
	uncapped := *bb
	uncapped.driver = qemu.New(qemu.Options{Logger: quiet, TCGCodeBufferMiB: -1})
	uncapped.n = 1 << 20 // its VM IDs differ from bb's
	if o.tcgBuffer {
		res.extraNames = append(res.extraNames, floorUncappedName, agentUncappedName)
	}
	// The agent resumed from a machine saved after its boot (vm.Saver):
	// what a VM template would cost against the boot it replaces.
	var agentState string
	if !o.skip["boot"] && !o.skip["restore"] {
		if agentState, err = bb.savedAgent(ctx); err != nil {
			log.Error("save an agent VM", "err", err)
			res.failed[restoredAgentName] = err
		} else {
			res.extraNames = append(res.extraNames, restoredAgentName)
		}
	}
	// Every variant runs once per round; the order rotates from round to
	// round so that no variant always follows the same one (a VM's exit
	// and the host's caches colour the next boot).
	var variants []variant
	if !o.skip["boot"] {
		variants = append(variants,
			variant{"floor", func(ctx context.Context, keep bool) error {
				s, err := bb.floor(ctx)
				log.Debug("floor", "sample", s)
				if err == nil && keep {
					res.floor = append(res.floor, s)
				}
				return err
			}},
			variant{"agent", func(ctx context.Context, keep bool) error {
				s, err := bb.agent(ctx, bundle.Initrd)
				log.Debug("agent", "sample", s)
				if err == nil && keep {
					res.agent = append(res.agent, s)
				}
				return err
			}})
		for _, c := range o.compare {
			variants = append(variants, variant{c.name, func(ctx context.Context, keep bool) error {
				s, err := bb.agent(ctx, c.initrd)
				log.Debug(c.name, "sample", s)
				if err == nil && keep {
					res.extra[c.name] = append(res.extra[c.name], s)
				}
				return err
			}})
		}
		if agentState != "" {
			variants = append(variants, variant{restoredAgentName, func(ctx context.Context, keep bool) error {
				s, err := bb.restoredAgent(ctx, agentState)
				log.Debug(restoredAgentName, "sample", s)
				if err == nil && keep {
					res.extra[restoredAgentName] = append(res.extra[restoredAgentName], s)
				}
				return err
			}})
		}
		if o.tcgBuffer {
			variants = append(variants, variant{floorUncappedName, func(ctx context.Context, keep bool) error {
				s, err := uncapped.floor(ctx)
				if err == nil && keep {
					res.extra[floorUncappedName] = append(res.extra[floorUncappedName], s)
				}
				return err
			}}, variant{agentUncappedName, func(ctx context.Context, keep bool) error {
				s, err := uncapped.agent(ctx, bundle.Initrd)
				if err == nil && keep {
					res.extra[agentUncappedName] = append(res.extra[agentUncappedName], s)
				}
				return err
			}})
		}
	}
	if pb != nil {
		variants = append(variants, variant{"product", func(ctx context.Context, keep bool) error {
			s, err := pb.round(ctx, memorySettle)
			log.Debug("product", "sample", s)
			if err == nil && keep {
				res.product = append(res.product, s)
			}
			return err
		}})
	}
	for round := 0; round <= o.rounds; round++ {
		warmUp := round == 0
		for _, i := range roundOrder(len(variants), round) {
			v := variants[i]
			if res.failed[v.name] != nil {
				continue
			}
			log.Debug("boot", "round", round, "variant", v.name)
			if err := v.run(ctx, !warmUp); err != nil {
				// A variant that fails is reported, not retried; the
				// others go on.
				log.Error("boot variant failed", "variant", v.name, "round", round, "err", err)
				res.failed[v.name] = err
			}
		}
		if ctx.Err() != nil {
			break
		}
		log.Info("boot round done", "round", round, "warm-up", warmUp, "load", loadAverage())
	}
	if res.idleFloor, err = bb.idleFloorMemory(ctx, memorySettle); err != nil {
		log.Error("idle floor memory", "err", err)
		res.failed["idle floor"] = err
	}
	return res.sections()
}

// variant is one way to boot, run once per round; keep says whether the
// sample counts (not in the warm-up round).
type variant struct {
	name string
	run  func(ctx context.Context, keep bool) error
}

// runInterleaved runs a warm-up round and then rounds of every variant, in
// an order that changes per round, and stops at the first failure.
func runInterleaved(ctx context.Context, log *slog.Logger, what string, rounds int, variants []variant) error {
	for round := 0; round <= rounds; round++ {
		for _, i := range roundOrder(len(variants), round) {
			if err := variants[i].run(ctx, round > 0); err != nil {
				return fmt.Errorf("%s: %w", variants[i].name, err)
			}
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		log.Info(what+" round done", "round", round, "warm-up", round == 0, "load", loadAverage())
	}
	return nil
}
