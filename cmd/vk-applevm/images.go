package main

import (
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/vk-applevm/vk-applevm/image"
	"k8s.io/apimachinery/pkg/api/resource"
)

func init() { register(newImagesCommand) }

func newImagesCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "images",
		Aliases: []string{"image"},
		Short:   "List, pull, remove and prune images (ls|pull|rm|prune)",
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usagef(cmd, "unknown command %q: want ls, pull, rm or prune", args[0])
			}
			return nil
		},
		// Plain `images` lists, as `docker images` does.
		RunE: func(cmd *cobra.Command, _ []string) error { return imagesLs(cmd, g) },
	}
	cmd.AddCommand(&cobra.Command{
		Use: "ls", Aliases: []string{"list"}, Short: "List images", Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return imagesLs(cmd, g) },
	})
	var platform string
	var insecure []string
	pull := &cobra.Command{
		Use: "pull [--platform OS/ARCH] [--insecure-registry HOST:PORT] IMAGE...", Short: "Pull images",
		Args: minArgs(1, "at least one IMAGE"),
		RunE: func(cmd *cobra.Command, refs []string) error { return imagesPull(cmd, g, platform, insecure, refs) },
	}
	pull.Flags().StringVar(&platform, "platform", "", "image platform (default: the host's)")
	pull.Flags().StringArrayVar(&insecure, "insecure-registry", nil, "registry reached over plain HTTP (repeatable)")
	cmd.AddCommand(pull)
	cmd.AddCommand(&cobra.Command{
		Use: "rm IMAGE...", Aliases: []string{"remove"}, Short: "Remove images",
		Args: minArgs(1, "at least one IMAGE"),
		RunE: func(cmd *cobra.Command, refs []string) error { return imagesRm(cmd, g, refs) },
	})
	cmd.AddCommand(&cobra.Command{
		Use: "prune", Short: "Remove content no image and no container uses", Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return imagesPrune(cmd, g) },
	})
	return cmd
}

func imagesLs(cmd *cobra.Command, g *globals) error {
	ctx := cmd.Context()
	store, err := g.openImages()
	if err != nil {
		return internal(err)
	}
	imgs, err := store.List(ctx)
	if err != nil {
		return internal(err)
	}
	tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 3, ' ', 0)
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

func imagesPull(cmd *cobra.Command, g *globals, platform string, insecure, refs []string) error {
	ctx := cmd.Context()
	var opts []image.Option
	if len(insecure) > 0 {
		opts = append(opts, image.WithInsecureRegistries(insecure...))
	}
	store, err := g.openImages(opts...)
	if err != nil {
		return internal(err)
	}
	for _, ref := range refs {
		img, err := pullWithProgress(ctx, store, ref, platform, cmd.ErrOrStderr())
		if err != nil {
			return internal(err)
		}
		if _, err := store.Rootfs(ctx, img); err != nil {
			return internal(err)
		}
		fmt.Fprintf(cmd.OutOrStdout(), "%s %s\n", img.Ref, img.Digest)
	}
	return nil
}

func imagesRm(cmd *cobra.Command, g *globals, refs []string) error {
	store, err := g.openImages()
	if err != nil {
		return internal(err)
	}
	for _, ref := range refs {
		if err := store.Remove(cmd.Context(), ref); err != nil {
			return internal(err)
		}
		fmt.Fprintln(cmd.OutOrStdout(), ref)
	}
	return nil
}

// imagesPrune removes content no image ref and no existing container uses.
func imagesPrune(cmd *cobra.Command, g *globals) error {
	ctx := cmd.Context()
	env, err := g.openRuntime(ctx, nil, nil)
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
	fmt.Fprintf(cmd.OutOrStdout(), "removed %d blobs and %d root filesystems, freed %s\n", len(report.Blobs), len(report.Rootfs),
		resource.NewQuantity(report.BytesFreed, resource.BinarySI).String())
	return nil
}
