package main

import (
	"github.com/vk-applevm/vk-applevm/vm"
	"github.com/vk-applevm/vk-applevm/vm/vz"
)

const defaultDriver = "vz"

// drivers returns the backends the shim can boot machines with.
func (g *globals) drivers() map[string]vm.Driver {
	d := vz.New(vz.Options{Logger: g.log})
	return map[string]vm.Driver{d.Name(): d}
}
