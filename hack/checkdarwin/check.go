package main

import (
	"context"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"

	"golang.org/x/tools/go/packages"
)

// Options select what Check loads.
type Options struct {
	// Dir is where patterns are resolved (the module root); "" is ".".
	Dir string
	// GOARCH is the Mac architecture; "" is arm64 (Apple silicon), the
	// one the project ships.
	GOARCH string
	// Tags are extra build tags, e.g. vz_integration.
	Tags []string
}

// noDarwinCC is the C compiler named off macOS: cgo reports it missing.
const noDarwinCC = "checkdarwin-no-darwin-cc"

// Problem is one error that would break the darwin build.
type Problem struct {
	Package string
	Pos     string
	Msg     string
}

func (p Problem) String() string {
	if p.Pos == "" || p.Pos == "-" {
		return fmt.Sprintf("%s: %s", p.Package, p.Msg)
	}
	return fmt.Sprintf("%s: %s", p.Pos, p.Msg)
}

// Result is what a check found.
type Result struct {
	// Problems are the errors that count.
	Problems []Problem
	// Ignored are errors that do not count: those of cgo packages that only
	// say cgo did not run, and those of other dependencies, which matter
	// only through errors they cause in the module's own packages.
	Ignored []Problem
	// Packages is how many of the module's own packages were checked.
	Packages int
	// CgoPackages are the loaded packages with their own `import "C"`,
	// such as Code-Hex/vz.
	CgoPackages []string
}

// Check type-checks patterns (relative to dir) as they build for
// darwin/arm64 with cgo. Packages are loaded from source: the module's own
// packages in full (tests included), dependencies without function bodies.
//
// Loading darwin cgo on Linux cannot succeed everywhere: cgo cannot
// preprocess Objective-C for darwin here, so runtime/cgo and every package
// with its own `import "C"` (Code-Hex/vz) report errors about C. Those are
// filtered. Everything else in the module's packages is a problem — most of
// all a call into vz that does not match its API, which is reported in our
// package, against vz's real exported declarations.
func Check(ctx context.Context, opts Options, patterns ...string) (Result, error) {
	if opts.Dir == "" {
		opts.Dir = "."
	}
	if opts.GOARCH == "" {
		opts.GOARCH = "arm64"
	}
	absDir, err := filepath.Abs(opts.Dir)
	if err != nil {
		return Result{}, fmt.Errorf("resolve %s: %w", opts.Dir, err)
	}
	var buildFlags []string
	if len(opts.Tags) > 0 {
		buildFlags = []string{"-tags=" + strings.Join(opts.Tags, ",")}
	}
	// Code-Hex/vz is cgo; without CGO_ENABLED=1 its API disappears.
	env := append(os.Environ(), "GOOS=darwin", "GOARCH="+opts.GOARCH, "CGO_ENABLED=1")
	if runtime.GOOS != "darwin" {
		// No compiler here targets darwin. Name one that cannot exist, so
		// cgo fails the same way whether or not the host has clang.
		env = append(env, "CC="+noDarwinCC)
	}
	cfg := &packages.Config{
		Context:    ctx,
		Dir:        absDir,
		Env:        env,
		BuildFlags: buildFlags,
		Tests:      true,
		Mode: packages.NeedName | packages.NeedFiles | packages.NeedCompiledGoFiles |
			packages.NeedImports | packages.NeedTypes | packages.NeedSyntax |
			packages.NeedTypesInfo | packages.NeedModule,
	}
	roots, err := packages.Load(cfg, patterns...)
	if err != nil {
		return Result{}, fmt.Errorf("load %v for darwin/%s: %w", patterns, opts.GOARCH, err)
	}
	var res Result
	seen := map[string]bool{}
	checked := map[string]bool{}
	// One error can be reported for a package and again for its test
	// variant, and by go list as well as the type checker (with a relative
	// position): report it once.
	reported := map[string]bool{}
	ownModule := map[string]bool{}
	for _, p := range roots {
		if p.Module != nil {
			ownModule[p.Module.Path] = true
		}
	}
	packages.Visit(roots, nil, func(p *packages.Package) {
		if seen[p.ID] {
			return
		}
		seen[p.ID] = true
		own := p.Module != nil && ownModule[p.Module.Path]
		if own && !checked[p.PkgPath] {
			checked[p.PkgPath] = true
			res.Packages++
		}
		cgo := p.PkgPath == "runtime/cgo" || importsC(p)
		if cgo && !slices.Contains(res.CgoPackages, p.PkgPath) {
			res.CgoPackages = append(res.CgoPackages, p.PkgPath)
		}
		for _, e := range splitCompilerOutput(p.Errors) {
			key := filepath.Base(e.Pos) + "\x00" + e.Msg
			if reported[key] {
				continue
			}
			reported[key] = true
			problem := Problem{Package: p.PkgPath, Pos: e.Pos, Msg: e.Msg}
			if own || (cgo && !isCgoError(e)) {
				res.Problems = append(res.Problems, problem)
			} else {
				res.Ignored = append(res.Ignored, problem)
			}
		}
	})
	sort.Slice(res.Problems, func(i, j int) bool { return res.Problems[i].String() < res.Problems[j].String() })
	return res, nil
}

// splitCompilerOutput turns go list's compiler output blocks ("# pkg"
// followed by file:line:col: msg lines) into one error per line, so each
// can be matched with the type checker's report of the same error.
func splitCompilerOutput(errs []packages.Error) []packages.Error {
	var out []packages.Error
	for _, e := range errs {
		if !strings.HasPrefix(e.Msg, "# ") {
			out = append(out, e)
			continue
		}
		for _, line := range strings.Split(e.Msg, "\n")[1:] {
			pos, msg, ok := cutPosition(line)
			if !ok {
				out = append(out, packages.Error{Pos: e.Pos, Msg: line, Kind: e.Kind})
				continue
			}
			out = append(out, packages.Error{Pos: pos, Msg: msg, Kind: e.Kind})
		}
	}
	return out
}

// cutPosition splits "file.go:12:5: msg" into position and message.
func cutPosition(line string) (pos, msg string, ok bool) {
	i := strings.Index(line, ".go:")
	if i < 0 {
		return "", "", false
	}
	rest := line[i+len(".go:"):]
	j := strings.Index(rest, ": ")
	if j < 0 {
		return "", "", false
	}
	return line[:i+len(".go:")+j], rest[j+2:], true
}

// importsC reports whether one of the package's files imports "C". The
// files' import clauses are read again because dependencies' syntax is not
// kept.
func importsC(p *packages.Package) bool {
	files := append(append([]string{}, p.GoFiles...), p.IgnoredFiles...)
	fset := token.NewFileSet()
	for _, name := range files {
		f, err := parser.ParseFile(fset, name, nil, parser.ImportsOnly)
		if err != nil {
			continue
		}
		if hasImportC(f) {
			return true
		}
	}
	return false
}

func hasImportC(f *ast.File) bool {
	for _, imp := range f.Imports {
		if imp.Path.Value == `"C"` {
			return true
		}
	}
	return false
}

// isCgoError reports whether an error is a consequence of cgo not running:
// references into package C, the import itself, or cgo's own failure.
func isCgoError(e packages.Error) bool {
	msg := e.Msg
	for _, s := range []string{"C.", `"C"`, "import C", "cgo", "_Ctype_", "_Cfunc_", "_cgo_"} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}
