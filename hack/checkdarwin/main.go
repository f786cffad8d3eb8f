// Command checkdarwin type-checks the project as it builds for macOS
// (darwin/arm64, cgo on) from any host, so a wrong call into
// Code-Hex/vz fails CI on Linux before a Mac ever builds it. Plain
// `GOOS=darwin go vet` cannot do this: with cgo off, vz's cgo files drop
// out and vz itself no longer compiles.
//
//	go run ./hack/checkdarwin [-C dir] [-arch arm64] [-tags t1,t2] [-v] [patterns...]   (default ./...)
//	go run ./hack/checkdarwin -glue [-C dir]
//
// It exits 1 when a problem is found, listing each as file:line:col: msg.
// With -glue it counts instead the lines of every file that builds only for
// darwin (the code no Linux run executes) and exits 1 above
// MaxGlueCodeLines.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
)

func main() {
	dir := flag.String("C", ".", "directory to load `patterns` from (the module root)")
	arch := flag.String("arch", "arm64", "darwin `GOARCH` to check")
	tags := flag.String("tags", "", "comma-separated extra build `tags`")
	verbose := flag.Bool("v", false, "also list the errors that were ignored")
	glue := flag.Bool("glue", false, "count the lines of the darwin-only files instead")
	flag.Parse()
	if *glue {
		files, err := DarwinGlue(*dir)
		if err != nil {
			fmt.Fprintln(os.Stderr, "checkdarwin:", err)
			os.Exit(2)
		}
		if code := printGlue(os.Stdout, files); code > MaxGlueCodeLines {
			fmt.Fprintf(os.Stderr, "checkdarwin: %d lines of darwin-only code, over %d: move what is platform-neutral out of the darwin files\n", code, MaxGlueCodeLines)
			os.Exit(1)
		}
		return
	}
	patterns := flag.Args()
	if len(patterns) == 0 {
		patterns = []string{"./..."}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()

	opts := Options{Dir: *dir, GOARCH: *arch}
	if *tags != "" {
		opts.Tags = strings.Split(*tags, ",")
	}
	res, err := Check(ctx, opts, patterns...)
	if err != nil {
		fmt.Fprintln(os.Stderr, "checkdarwin:", err)
		os.Exit(2)
	}
	for _, p := range res.Problems {
		fmt.Println(p)
	}
	if *verbose {
		for _, p := range res.Ignored {
			fmt.Fprintln(os.Stderr, "ignored:", p)
		}
	}
	if *verbose || len(res.Problems) > 0 {
		fmt.Fprintf(os.Stderr, "checkdarwin: %d packages checked for darwin/%s, %d problems, %d cgo-only errors ignored\n",
			res.Packages, opts.GOARCH, len(res.Problems), len(res.Ignored))
	}
	if len(res.Problems) > 0 {
		os.Exit(1)
	}
}
