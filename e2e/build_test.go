package e2e

// buildTags are the tags the harness builds each binary with, as the
// Makefile does (SHIM_TAGS; cmd/vk-applevm-shim/build.go says why).
var buildTags = map[string]string{"vk-applevm": "", "vk-applevm-shim": "grpcnotrace"}
