package main

import (
	"context"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/vk-applevm/vk-applevm/image"
	"k8s.io/apimachinery/pkg/api/resource"
)

func init() {
	register(command{name: "images", summary: "list, pull, remove and prune images (ls|pull|rm|prune)", run: runImages})
}

func runImages(ctx context.Context, g *globals, args []string) error {
	if len(args) == 0 {
		args = []string{"ls"}
	}
	sub, rest := args[0], args[1:]
	switch sub {
	case "ls", "list":
		return imagesLs(ctx, g, rest)
	case "pull":
		return imagesPull(ctx, g, rest)
	case "rm", "remove":
		return imagesRm(ctx, g, rest)
	case "prune":
		return imagesPrune(ctx, g, rest)
	}
	fmt.Fprintf(os.Stderr, "Usage: vk-applevm images ls|pull|rm|prune\n")
	return errUsage
}

func imagesLs(ctx context.Context, g *globals, args []string) error {
	fs := newFlags("images ls", "")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	store, err := g.openImages()
	if err != nil {
		return internal(err)
	}
	imgs, err := store.List(ctx)
	if err != nil {
		return internal(err)
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 3, ' ', 0)
	fmt.Fprintln(tw, "REFERENCE\tDIGEST\tPLATFORM\tSIZE\tPULLED")
	for _, img := range imgs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", img.Ref, shortDigest(img.Digest), img.Platform.String(),
			resource.NewQuantity(img.Size, resource.BinarySI).String(), img.Pulled.Local().Format(time.DateTime))
	}
	return tw.Flush()
}

func shortDigest(d string) string {
	if i := strings.IndexByte(d, ':'); i >= 0 && len(d) > i+13 {
		return d[:i+13]
	}
	return d
}

func imagesPull(ctx context.Context, g *globals, args []string) error {
	fs := newFlags("images pull", "[--platform OS/ARCH] [--insecure-registry HOST:PORT] IMAGE...")
	platform := fs.String("platform", "", "image platform (default: the host's)")
	var insecure stringList
	fs.Var(&insecure, "insecure-registry", "registry reached over plain HTTP (repeatable)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return errUsage
	}
	var opts []image.Option
	if len(insecure) > 0 {
		opts = append(opts, image.WithInsecureRegistries(insecure...))
	}
	store, err := g.openImages(opts...)
	if err != nil {
		return internal(err)
	}
	for _, ref := range fs.Args() {
		img, err := store.Pull(ctx, ref, image.PullOptions{Platform: *platform})
		if err != nil {
			return internal(err)
		}
		if _, err := store.Rootfs(ctx, img); err != nil {
			return internal(err)
		}
		fmt.Printf("%s %s\n", img.Ref, img.Digest)
	}
	return nil
}

func imagesRm(ctx context.Context, g *globals, args []string) error {
	fs := newFlags("images rm", "IMAGE...")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return errUsage
	}
	store, err := g.openImages()
	if err != nil {
		return internal(err)
	}
	for _, ref := range fs.Args() {
		if err := store.Remove(ctx, ref); err != nil {
			return internal(err)
		}
		fmt.Println(ref)
	}
	return nil
}

// imagesPrune removes content no image ref and no existing container uses.
func imagesPrune(ctx context.Context, g *globals, args []string) error {
	fs := newFlags("images prune", "")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	env, err := g.openRuntime(ctx, nil)
	if err != nil {
		return internal(err)
	}
	defer env.close(ctx)
	sbs, err := env.rt.List(ctx)
	if err != nil {
		return internal(err)
	}
	used := map[string]bool{}
	for _, sb := range sbs {
		used[sb.ImageDigest()] = true
	}
	report, err := env.images.Prune(ctx, func(d string) bool { return used[d] })
	if err != nil {
		return internal(err)
	}
	fmt.Printf("removed %d blobs and %d root filesystems, freed %s\n", len(report.Blobs), len(report.Rootfs),
		resource.NewQuantity(report.BytesFreed, resource.BinarySI).String())
	return nil
}
