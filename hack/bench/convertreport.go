package main

import (
	"fmt"
	"time"

	"github.com/vk-applevm/vk-applevm/hack/bench/results"
	"github.com/vk-applevm/vk-applevm/image/rootfs/rootfsbench"
)

// convertTarget: the conversion at least as fast as mkfs.ext4 -d.
const convertTarget = 1.0

// convertResults is what the conversion rounds measured.
type convertResults struct {
	layers    int
	fileBytes int64
	rounds    []rootfsbench.Round
	err       error
}

func (r convertResults) section() section {
	title := fmt.Sprintf("image -> ext4 (%d layers, %d MiB of files) vs mkfs.ext4 -d on the same tree", r.layers, r.fileBytes>>20)
	if r.err != nil || len(r.rounds) == 0 {
		why := "no rounds"
		if r.err != nil {
			why = "failed: " + r.err.Error()
		}
		return section{Title: title, Rows: []row{
			missing("mkfs / Build, tar layers", ">= 1.00x", why),
			missing("mkfs / Build, gzip layers", ">= 1.00x", why),
		}}
	}
	wall := func(pick func(rootfsbench.Round) rootfsbench.Timing) []time.Duration {
		return field(r.rounds, func(x rootfsbench.Round) time.Duration { return pick(x).Wall })
	}
	cpu := func(pick func(rootfsbench.Round) rootfsbench.Timing) []time.Duration {
		return field(r.rounds, func(x rootfsbench.Round) time.Duration { return pick(x).CPU })
	}
	build := func(x rootfsbench.Round) rootfsbench.Timing { return x.Build }
	gzip := func(x rootfsbench.Round) rootfsbench.Timing { return x.BuildGzip }
	mkfs := func(x rootfsbench.Round) rootfsbench.Timing { return x.Mkfs }
	rows := []row{
		info("mkfs.ext4 -d wall / CPU", fmtDuration(median(wall(mkfs)))+" / "+fmtDuration(median(cpu(mkfs)))+"  "+fmtSeries(wall(mkfs))),
		info("Build, tar layers, wall / CPU", fmtDuration(median(wall(build)))+" / "+fmtDuration(median(cpu(build)))+"  "+fmtSeries(wall(build))),
		info("Build, gzip layers, wall / CPU", fmtDuration(median(wall(gzip)))+" / "+fmtDuration(median(cpu(gzip)))+"  "+fmtSeries(wall(gzip))),
	}
	for _, v := range []struct {
		name string
		pick func(rootfsbench.Round) rootfsbench.Timing
	}{{"tar", build}, {"gzip", gzip}} {
		w := ratio(median(wall(mkfs)), median(wall(v.pick)))
		c := ratio(median(cpu(mkfs)), median(cpu(v.pick)))
		rows = append(rows,
			measured(results.Figure{ID: "convert." + v.name,
				Figure: fmt.Sprintf("image → ext4 (%d %s layers, %d MiB) vs `mkfs.ext4 -d` on the same tree, × as fast", r.layers, v.name, r.fileBytes>>20),
				Value:  median(wall(v.pick)).Seconds(), Unit: "s", Reference: &results.Reference{Name: "mkfs.ext4 -d", Value: median(wall(mkfs)).Seconds()},
				Ratio: w, Target: results.RatioAtLeast(convertTarget),
				Detail: fmt.Sprintf("%d rounds, medians; paired median %.2f×", len(r.rounds), median(pairedRatios(wall(mkfs), wall(v.pick))))}),
			info("mkfs / Build, "+v.name+" layers, CPU", fmt.Sprintf("%.2fx", c)),
		)
	}
	return section{Title: title, Rows: rows}
}
