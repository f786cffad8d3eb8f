package main

import (
	"log/slog"

	"github.com/vk-applevm/vk-applevm/vm"
	"github.com/vk-applevm/vk-applevm/vm/vz"
)

// drivers returns the backends the shim boots machines with. Under vz the
// machine lives inside this process, which must therefore be signed with
// com.apple.security.virtualization (deploy/darwin.mk: sign).
func drivers(log *slog.Logger, _ string) map[string]vm.Driver {
	d := vz.New(vz.Options{Logger: log})
	return map[string]vm.Driver{d.Name(): d}
}
