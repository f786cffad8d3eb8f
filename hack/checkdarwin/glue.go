package main

import (
	"fmt"
	"go/build/constraint"
	"go/scanner"
	"go/token"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// MaxGlueCodeLines bounds the code that builds only for macOS: the part of
// the project no Linux run executes (the project's brief: under 600
// lines). Lines of code, as cloc counts them: comments and blank lines are
// not code.
const MaxGlueCodeLines = 600

// GlueFile is one non-test Go file that builds only for darwin.
type GlueFile struct {
	Path  string // relative to the module root, slash-separated
	Lines int    // physical lines
	Code  int    // lines holding code (not blank, not only comment)
}

// knownOS and knownArch are Go's GOOS and GOARCH values (go tool dist
// list), for file-name suffixes and build constraints. ios counts as
// darwin: it satisfies the darwin tag and _darwin files.
var (
	knownOS = []string{"aix", "android", "darwin", "dragonfly", "freebsd", "hurd", "illumos", "ios", "js",
		"linux", "nacl", "netbsd", "openbsd", "plan9", "solaris", "wasip1", "windows", "zos"}
	knownArch = []string{"386", "amd64", "arm", "arm64", "loong64", "mips", "mipsle", "mips64", "mips64le",
		"ppc64", "ppc64le", "riscv64", "s390x", "wasm"}
	unixOS = []string{"aix", "android", "darwin", "dragonfly", "freebsd", "hurd", "illumos", "ios", "linux",
		"netbsd", "openbsd", "solaris"}
)

// DarwinGlue lists the module's non-test Go files under root that build for
// darwin and for no other GOOS, by file name and //go:build line.
func DarwinGlue(root string) ([]GlueFile, error) {
	var out []GlueFile
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		name := d.Name()
		if d.IsDir() {
			// The go tool ignores these; bin/ holds build output.
			if p != root && (strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_") || name == "testdata" || name == "vendor" || name == "bin") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(name, ".go") || strings.HasSuffix(name, "_test.go") {
			return nil
		}
		src, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		only, err := darwinOnly(name, src)
		if err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		if !only {
			return nil
		}
		rel, _ := filepath.Rel(root, p)
		lines, code := countLines(src)
		out = append(out, GlueFile{Path: filepath.ToSlash(rel), Lines: lines, Code: code})
		return nil
	})
	return out, err
}

// darwinOnly reports whether a file builds for darwin and for no other
// GOOS, whatever the architecture. Tags other than GOOS, GOARCH, unix, cgo,
// gc and go1.N are off, as in a default build (no_vz, vz_integration).
func darwinOnly(name string, src []byte) (bool, error) {
	expr, err := buildExpr(src)
	if err != nil {
		return false, err
	}
	buildsFor := func(goos string) bool {
		for _, arch := range knownArch {
			if !nameMatches(name, goos, arch) {
				continue
			}
			if expr == nil || expr.Eval(func(tag string) bool {
				switch {
				case tag == goos, tag == arch, tag == "cgo", tag == "gc", strings.HasPrefix(tag, "go1."):
					return true
				case tag == "darwin" && goos == "ios":
					return true
				case tag == "unix":
					return slices.Contains(unixOS, goos)
				}
				return false
			}) {
				return true
			}
		}
		return false
	}
	if !buildsFor("darwin") {
		return false, nil
	}
	for _, goos := range knownOS {
		if goos != "darwin" && goos != "ios" && buildsFor(goos) {
			return false, nil
		}
	}
	return true, nil
}

// buildExpr is the file's //go:build constraint, nil when it has none. Like
// the go tool, it reads only the comments before the package clause.
func buildExpr(src []byte) (constraint.Expr, error) {
	for _, line := range strings.Split(string(src), "\n") {
		line = strings.TrimSpace(line)
		if strings.HasPrefix(line, "package ") {
			break
		}
		if constraint.IsGoBuild(line) {
			return constraint.Parse(line)
		}
	}
	return nil, nil
}

// nameMatches applies the go tool's file-name rule: name_GOOS, name_GOARCH
// and name_GOOS_GOARCH build only there (name_darwin also for ios).
func nameMatches(name, goos, arch string) bool {
	parts := strings.Split(strings.TrimSuffix(name, ".go"), "_")
	if len(parts) < 2 {
		return true
	}
	osMatches := func(s string) bool { return s == goos || (s == "darwin" && goos == "ios") }
	last := parts[len(parts)-1]
	if len(parts) >= 3 && slices.Contains(knownOS, parts[len(parts)-2]) && slices.Contains(knownArch, last) {
		return osMatches(parts[len(parts)-2]) && last == arch
	}
	if slices.Contains(knownOS, last) {
		return osMatches(last)
	}
	if slices.Contains(knownArch, last) {
		return last == arch
	}
	return true
}

// countLines counts physical lines and lines of code: a line is code when
// a token other than a comment starts on it or a string literal spans it.
func countLines(src []byte) (lines, code int) {
	fset := token.NewFileSet()
	f := fset.AddFile("", fset.Base(), len(src))
	var s scanner.Scanner
	s.Init(f, src, nil, 0) // comments skipped
	codeLines := map[int]bool{}
	for {
		pos, tok, lit := s.Scan()
		if tok == token.EOF {
			break
		}
		if tok == token.SEMICOLON && lit == "\n" {
			continue // inserted at a line end: no code of its own
		}
		line, span := f.Line(pos), 0
		if tok == token.STRING {
			span = strings.Count(lit, "\n") // a raw string's lines are code
		}
		for i := 0; i <= span; i++ {
			codeLines[line+i] = true
		}
	}
	lines = strings.Count(string(src), "\n")
	if len(src) > 0 && src[len(src)-1] != '\n' {
		lines++
	}
	return lines, len(codeLines)
}

// printGlue writes one line per file and the totals, and returns the
// total lines of code.
func printGlue(w io.Writer, files []GlueFile) (code int) {
	fmt.Fprintf(w, "%6s %6s  %s\n", "code", "lines", "darwin-only file")
	lines := 0
	for _, f := range files {
		fmt.Fprintf(w, "%6d %6d  %s\n", f.Code, f.Lines, f.Path)
		code += f.Code
		lines += f.Lines
	}
	fmt.Fprintf(w, "%6d %6d  total of %d files (limit: %d lines of code)\n", code, lines, len(files), MaxGlueCodeLines)
	return code
}
