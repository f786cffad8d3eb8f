package main

import "embed"

// componentSource is what `cluster build` compiles: the pinned go.mod/go.sum
// and the tiny main packages, one per component. Embedding it makes the tool
// self-contained, so it can build from any working directory (the e2e tests
// exec it).
//
//go:embed go.mod go.sum cmd
var componentSource embed.FS
