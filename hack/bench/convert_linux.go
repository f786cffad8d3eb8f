package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/vk-applevm/vk-applevm/image/rootfs/rootfsbench"
)

// runConvert times rootfs.Build (from plain tar and from gzip layers)
// against mkfs.ext4 -d on the same tree, in rotating order, one warm-up
// round (page cache) and o.rounds measured ones.
func runConvert(ctx context.Context, o options, work string, log *slog.Logger) section {
	var res convertResults
	tree, err := rootfsbench.NewTree(ctx)
	if err != nil {
		res.err = err
		return res.section()
	}
	res.layers, res.fileBytes = len(tree.Layers), tree.FileBytes
	dir := filepath.Join(work, "convert")
	defer os.RemoveAll(dir)
	c, err := rootfsbench.NewComparison(tree, dir)
	if err != nil {
		res.err = err
		return res.section()
	}
	for round := 0; round <= o.rounds; round++ {
		r, err := c.Round(ctx)
		if err != nil {
			res.err = fmt.Errorf("round %d: %w", round, err)
			return res.section()
		}
		if round > 0 {
			res.rounds = append(res.rounds, r)
		}
		log.Debug("convert round", "round", round, "build", r.Build, "build-gzip", r.BuildGzip, "mkfs", r.Mkfs)
	}
	log.Info("conversion rounds done", "rounds", o.rounds, "load", loadAverage())
	return res.section()
}
