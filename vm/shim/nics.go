package shim

import (
	"context"
	"fmt"
	"os"

	"github.com/vk-applevm/vk-applevm/network/switchport"
	"github.com/vk-applevm/vk-applevm/vm"
)

// cableNICs gives every switch NIC of spec its cable: the hypervisor's end
// goes into the returned spec (Driver.Start takes it), and the shim keeps
// the switch's end plugged into the switch until ctx ends, plugging it again
// whenever the switch restarts. The shim, not the hypervisor or the node,
// holds the cable, so neither a node restart nor a switch restart changes
// the socket the hypervisor uses.
func (s *server) cableNICs(ctx context.Context, spec vm.Spec) (vm.Spec, error) {
	nics := append([]vm.NIC(nil), spec.NICs...)
	var opened []*os.File
	for i, n := range nics {
		if n.Attachment.Kind != vm.AttachSwitch {
			continue
		}
		vmEnd, swEnd, err := switchport.Pair()
		if err != nil {
			for _, f := range opened {
				f.Close()
			}
			return spec, fmt.Errorf("NIC %s: %w", n.MAC, err)
		}
		opened = append(opened, vmEnd, swEnd)
		nics[i].Attachment.File = vmEnd
		go func() {
			defer swEnd.Close()
			switchport.Plug(ctx, n.Attachment.Socket, spec.ID, swEnd, s.log.With("nic", n.MAC), nil)
		}()
	}
	spec.NICs = nics
	return spec, nil
}
