package main

import (
	"fmt"
	"time"

	"github.com/vk-applevm/vk-applevm/hack/bench/results"
)

// Targets of the issue.
const (
	bootTarget     = 1.10     // agent-ready at most 1.10x the floor
	agentRSSTarget = 10 << 20 // agent RSS at most 10 MiB
)

// restoredAgentName is the boot variant that resumes a saved agent VM
// (vm.Saver) instead of booting one.
const restoredAgentName = "agent resumed from a saved agent VM (-incoming), to its first answer"

// workloadExecs is how many execs the product path's workload runs.
const workloadExecs = 5

// bootResults is everything the boot rounds measured.
type bootResults struct {
	accel string
	// containerMiB is the memory of the product path's container.
	containerMiB uint64
	floor, agent []bootSample
	// extra holds the boots of the -compare initrds, by name.
	extra      map[string][]bootSample
	extraNames []string
	product    []productSample
	idleFloor  memory
	// failed holds the error that stopped a variant, by its name.
	failed map[string]error
}

// why says why a variant has no samples.
func (r bootResults) why(name string) string {
	if err := r.failed[name]; err != nil {
		return "failed: " + err.Error()
	}
	return "skipped"
}

// absent is the row of a figure whose variant has no samples: a missed
// target when the variant failed, no verdict when it was skipped.
func (r bootResults) absent(name, target, variant string) row {
	if r.failed[variant] == nil {
		return info(name, "n/a (skipped)")
	}
	return missing(name, target, variant+" "+r.why(variant))
}

func (r bootResults) sections() []section {
	boot := section{Title: "boot (QEMU " + r.accel + ", 1 vCPU; QEMU start -> ready)"}
	boot.Rows = append(boot.Rows, r.bootRows()...)
	boot.Rows = append(boot.Rows, r.productRows()...)
	return []section{boot, r.agentMemory(), r.hostMemory()}
}

func (r bootResults) bootRows() []row {
	const wallName, cpuName = "agent-ready / floor, wall", "agent-ready / floor, QEMU CPU"
	for v, samples := range map[string][]bootSample{"floor": r.floor, "agent": r.agent} {
		if len(samples) == 0 {
			return []row{r.absent(wallName, "<= 1.10x", v), r.absent(cpuName, "<= 1.10x", v)}
		}
	}
	fw, aw := walls(r.floor), walls(r.agent)
	fc, ac := cpus(r.floor), cpus(r.agent)
	wallRatio, cpuRatio := ratio(median(aw), median(fw)), ratio(median(ac), median(fc))
	rows := []row{
		info("floor (floorinit) wall", fmtDuration(median(fw))+"  "+fmtSeries(fw)),
		info("agent-ready wall", fmtDuration(median(aw))+"  "+fmtSeries(aw)),
		measured(results.Figure{
			ID: "boot.ratio", Figure: "VM boot to agent-ready vs the same kernel booting a trivial init (hack/floorinit), wall",
			Value: median(aw).Seconds(), Unit: "s", Reference: &results.Reference{Name: "the floor", Value: median(fw).Seconds()},
			Ratio: wallRatio, Target: results.RatioAtMost(bootTarget),
			Detail: fmt.Sprintf("QEMU %s; %d rounds, medians; paired median %.3f×; QEMU CPU %.3f×", r.accel, len(aw), median(pairedRatios(aw, fw)), cpuRatio),
		}),
		info("floor QEMU CPU", fmtDuration(median(fc))+"  "+fmtSeries(fc)),
		info("agent-ready QEMU CPU", fmtDuration(median(ac))+"  "+fmtSeries(ac)),
		atMost(cpuName, fmt.Sprintf("%.3fx (paired median %.3fx)", cpuRatio, median(pairedRatios(ac, fc))), cpuRatio, bootTarget, "1.10x"),
		info("guest uptime at /init: floor / agent",
			fmtDuration(median(field(r.floor, bootSample.initStart)))+" / "+fmtDuration(median(field(r.agent, bootSample.initStart)))),
		info("guest uptime: agent serving / first Info answered",
			fmtDuration(median(field(r.agent, bootSample.serveStart)))+" / "+fmtDuration(median(field(r.agent, bootSample.firstAnswer)))),
	}
	for _, name := range r.extraNames {
		e := r.extra[name]
		if len(e) == 0 {
			rows = append(rows, r.absent(name, "", name))
			continue
		}
		ew, ec := walls(e), cpus(e)
		wall := info(name+": wall / floor", fmt.Sprintf("%s, %.3fx (paired %.3fx)", fmtDuration(median(ew)), ratio(median(ew), median(fw)), median(pairedRatios(ew, fw))))
		if name == restoredAgentName {
			// What a VM template starts from (container/vmtemplate;
			// docs/decisions.md, "Resuming a saved machine instead of
			// booting").
			wall = measured(results.Figure{
				ID: "boot.resume", Figure: "An agent VM resumed from a machine saved after its boot (QEMU -incoming), to its first answer, vs the floor's boot, wall",
				Value: median(ew).Seconds(), Unit: "s", Reference: &results.Reference{Name: "the floor's boot", Value: median(fw).Seconds()},
				Ratio:  ratio(median(ew), median(fw)),
				Detail: fmt.Sprintf("QEMU %s; %d rounds, medians; paired median %.3f×; QEMU RSS at the first answer %s against %s booted; the runtime resumes templates this way with --vm-templates (run.echo.template)", r.accel, len(ew), median(pairedRatios(ew, fw)), fmtMiB(median(field(e, func(s bootSample) uint64 { return s.QEMU.RSS }))), fmtMiB(median(field(r.agent, func(s bootSample) uint64 { return s.QEMU.RSS })))),
			})
		}
		rows = append(rows,
			wall,
			info(name+": QEMU CPU / floor", fmt.Sprintf("%s, %.3fx (paired %.3fx)", fmtDuration(median(ec)), ratio(median(ec), median(fc)), median(pairedRatios(ec, fc)))),
			info(name+": guest /init, serving, answered; RSS", fmt.Sprintf("%s, %s, %s; %s",
				fmtDuration(median(field(e, bootSample.initStart))), fmtDuration(median(field(e, bootSample.serveStart))),
				fmtDuration(median(field(e, bootSample.firstAnswer))), fmtMiB(median(field(e, bootSample.agentRSS))))),
		)
	}
	return rows
}

func (r bootResults) productRows() []row {
	if len(r.product) == 0 {
		return []row{r.absent("product: Runtime.Create -> container ready", "", "product")}
	}
	cw := field(r.product, func(s productSample) time.Duration { return s.Create })
	cc := field(r.product, func(s productSample) time.Duration { return s.CPU })
	rows := []row{
		measured(results.Figure{ID: "product.create", Figure: "`Runtime.Create` → container ready (disks, address, shim, boot, agent setup)",
			Value: median(cw).Seconds(), Unit: "s",
			Detail: fmt.Sprintf("of which %s before QEMU runs; QEMU %s", fmtDuration(median(field(r.product, func(s productSample) time.Duration { return s.HostSetup }))), r.accel)}),
		info("product: QEMU CPU until container ready", fmtDuration(median(cc))),
	}
	if len(r.floor) > 0 {
		fw, fc := walls(r.floor), cpus(r.floor)
		rows = append(rows,
			info("product / floor, wall", fmt.Sprintf("%.3fx (paired median %.3fx)", ratio(median(cw), median(fw)), median(pairedRatios(cw, fw)))),
			info("product / floor, QEMU CPU", fmt.Sprintf("%.3fx (paired median %.3fx)", ratio(median(cc), median(fc)), median(pairedRatios(cc, fc)))),
		)
	}
	return rows
}

func (r bootResults) agentMemory() section {
	s := section{Title: "guest agent memory (VmRSS in the guest)"}
	const readyName = "agent RSS at ready"
	workName := fmt.Sprintf("agent RSS after %d execs with output + stats", workloadExecs)
	if len(r.agent) > 0 {
		v := median(field(r.agent, bootSample.agentRSS))
		s.Rows = append(s.Rows, measured(results.Figure{ID: "agent.rss-ready", Figure: "guest agent RSS in the guest, at ready",
			Value: mib(v), Unit: "MiB", Target: results.AtMost(mib(agentRSSTarget))}))
	} else {
		s.Rows = append(s.Rows, r.absent(readyName, "<= 10 MiB", "agent"))
	}
	if len(r.product) == 0 {
		return section{Title: s.Title, Rows: append(s.Rows, r.absent(workName, "<= 10 MiB", "product"))}
	}
	c := median(field(r.product, func(s productSample) uint64 { return s.AgentRSSCreated }))
	w := median(field(r.product, func(s productSample) uint64 { return s.AgentRSSWorked }))
	anon := median(field(r.product, func(s productSample) uint64 { return s.AgentAnon }))
	file := median(field(r.product, func(s productSample) uint64 { return s.AgentFile }))
	s.Rows = append(s.Rows,
		info("agent RSS with a container created", fmtMiB(c)),
		measured(results.Figure{ID: "agent.rss-worked", Figure: fmt.Sprintf("guest agent RSS in the guest, after %d execs with output and Stats", workloadExecs),
			Value: mib(w), Unit: "MiB", Target: results.AtMost(mib(agentRSSTarget)),
			Detail: fmt.Sprintf("anonymous %s, the binary's pages %s", fmtMiB(anon), fmtMiB(file))}),
		info("  of which anonymous / the binary's pages", fmtMiB(anon)+" / "+fmtMiB(file)),
	)
	return s
}

func (r bootResults) hostMemory() section {
	s := section{Title: "host memory per VM (RSS / PSS)"}
	if r.idleFloor.RSS > 0 {
		s.Rows = append(s.Rows, info("QEMU, idle floor VM", fmtMemory(r.idleFloor)))
	} else {
		s.Rows = append(s.Rows, r.absent("QEMU, idle floor VM", "", "idle floor"))
	}
	if len(r.agent) > 0 {
		s.Rows = append(s.Rows, info("QEMU, agent VM at ready (no disks)", fmtMemory(medianMemory(field(r.agent, func(s bootSample) memory { return s.QEMU })))))
	}
	if len(r.product) > 0 {
		q := medianMemory(field(r.product, func(s productSample) memory { return s.QEMU }))
		sh := medianMemory(field(r.product, func(s productSample) memory { return s.Shim }))
		s.Rows = append(s.Rows,
			qemuIdleFigure(r, q, sh),
			info("shim of that VM", fmtMemory(sh)),
		)
		if r.idleFloor.PSS > 0 {
			s.Rows = append(s.Rows, info("QEMU + shim of the container VM / idle floor QEMU (PSS)", fmt.Sprintf("%.2fx", ratio(q.PSS+sh.PSS, r.idleFloor.PSS))))
		}
	}
	return s
}

func walls(s []bootSample) []time.Duration {
	return field(s, func(b bootSample) time.Duration { return b.Wall })
}
func cpus(s []bootSample) []time.Duration {
	return field(s, func(b bootSample) time.Duration { return b.CPU })
}

func (b bootSample) initStart() time.Duration   { return b.InitStart }
func (b bootSample) serveStart() time.Duration  { return b.ServeStart }
func (b bootSample) firstAnswer() time.Duration { return b.FirstAnswer }
func (b bootSample) agentRSS() uint64           { return b.AgentRSS }

// field picks one value out of every sample.
func field[S, T any](samples []S, f func(S) T) []T {
	out := make([]T, len(samples))
	for i, s := range samples {
		out[i] = f(s)
	}
	return out
}

func medianMemory(ms []memory) memory {
	return memory{
		RSS: median(field(ms, func(m memory) uint64 { return m.RSS })),
		PSS: median(field(ms, func(m memory) uint64 { return m.PSS })),
	}
}

func fmtMemory(m memory) string { return fmtMiB(m.RSS) + " / " + fmtMiB(m.PSS) }

// qemuIdleFigure is an idle busybox container VM's QEMU against an idle
// floor VM's.
func qemuIdleFigure(r bootResults, q, shim memory) row {
	f := results.Figure{ID: "vmmem.qemu-idle",
		Figure: fmt.Sprintf("host memory of an idle busybox container VM's QEMU (%d MiB + overhead), RSS", r.containerMiB),
		Value:  mib(q.RSS), Unit: "MiB", Detail: fmt.Sprintf("PSS %s; its shim %s RSS", fmtMiB(q.PSS), fmtMiB(shim.RSS))}
	if r.idleFloor.RSS > 0 {
		f.Reference = &results.Reference{Name: "an idle floor VM's QEMU", Value: mib(r.idleFloor.RSS)}
		f.Ratio = ratio(q.RSS, r.idleFloor.RSS)
	}
	return measured(f)
}

// mib is bytes in MiB.
func mib[T uint64 | int64 | int](b T) float64 { return float64(b) / (1 << 20) }
