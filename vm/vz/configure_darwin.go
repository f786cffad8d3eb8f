//go:build darwin && !no_vz

package vz

import (
	"fmt"
	"log/slog"
	"net"

	"github.com/Code-Hex/vz/v3"
)

// configure turns cfg into a vz configuration, one attachX per device class.
// dir holds the NIC sockets' local ends.
func configure(cfg *Config, dir string) (_ *vz.VirtualMachineConfiguration, _ *hostEnds, err error) {
	ends := newHostEnds()
	defer func() {
		if err != nil {
			ends.closeAll()
		}
	}()
	boot, err := vz.NewLinuxBootLoader(cfg.Boot.Kernel,
		vz.WithCommandLine(cfg.Boot.Cmdline), vz.WithInitrd(cfg.Boot.Initrd))
	if err != nil {
		return nil, nil, fmt.Errorf("boot loader: %w", err)
	}
	c, err := vz.NewVirtualMachineConfiguration(boot, cfg.CPUs, cfg.MemoryBytes)
	if err != nil {
		return nil, nil, fmt.Errorf("machine configuration: %w", err)
	}
	steps := []struct {
		what   string
		attach func(*vz.VirtualMachineConfiguration, *Config, *hostEnds, string) error
	}{
		{"serial console", attachSerialLog},
		{"console ports", attachConsolePorts},
		{"disks", attachDisks},
		{"network", attachNICs},
		{"shares", attachShares},
		{"entropy and balloon", attachEntropyAndBalloon},
	}
	for _, s := range steps {
		if err := s.attach(c, cfg, ends, dir); err != nil {
			return nil, nil, fmt.Errorf("attach %s: %w", s.what, err)
		}
	}
	return c, ends, nil
}

func attachSerialLog(c *vz.VirtualMachineConfiguration, cfg *Config, ends *hostEnds, _ string) error {
	// A pipe drained into the capped log (which appends, keeping the boot
	// logs of earlier runs of the same machine), not vz's file
	// attachment, which grows for the machine's whole life.
	guestIn, guestOut, err := ends.addConsole(cfg.SerialLog, cfg.SerialLogMaxSize, slog.Default())
	if err != nil {
		return err
	}
	attachment, err := vz.NewFileHandleSerialPortAttachment(guestIn, guestOut)
	if err != nil {
		return fmt.Errorf("console log %s: %w", cfg.SerialLog, err)
	}
	serial, err := vz.NewVirtioConsoleDeviceSerialPortConfiguration(attachment)
	if err != nil {
		return err
	}
	c.SetSerialPortsVirtualMachineConfiguration([]*vz.VirtioConsoleDeviceSerialPortConfiguration{serial})
	return nil
}

func attachConsolePorts(c *vz.VirtualMachineConfiguration, cfg *Config, ends *hostEnds, _ string) error {
	if len(cfg.ConsolePorts) == 0 {
		return nil
	}
	console, err := vz.NewVirtioConsoleDeviceConfiguration()
	if err != nil {
		return err
	}
	for i, p := range cfg.ConsolePorts {
		guestIn, guestOut, err := ends.addPort(p.Name)
		if err != nil {
			return err
		}
		attachment, err := vz.NewFileHandleSerialPortAttachment(guestIn, guestOut)
		if err != nil {
			return fmt.Errorf("port %s: %w", p.Name, err)
		}
		port, err := vz.NewVirtioConsolePortConfiguration(
			vz.WithVirtioConsolePortConfigurationName(p.Name),
			vz.WithVirtioConsolePortConfigurationAttachment(attachment))
		if err != nil {
			return fmt.Errorf("port %s: %w", p.Name, err)
		}
		console.SetVirtioConsolePortConfiguration(i, port)
	}
	c.SetConsoleDevicesVirtualMachineConfiguration([]vz.ConsoleDeviceConfiguration{console})
	return nil
}

func attachDisks(c *vz.VirtualMachineConfiguration, cfg *Config, _ *hostEnds, _ string) error {
	var devices []vz.StorageDeviceConfiguration
	for _, d := range cfg.Disks {
		attachment, err := vz.NewDiskImageStorageDeviceAttachmentWithCacheAndSync(
			d.Path, d.ReadOnly, cachingMode(d.Caching), syncMode(d.Sync))
		if err != nil {
			return fmt.Errorf("disk %s (%s): %w", d.Identifier, d.Path, err)
		}
		device, err := vz.NewVirtioBlockDeviceConfiguration(attachment)
		if err != nil {
			return fmt.Errorf("disk %s: %w", d.Identifier, err)
		}
		if err := device.SetBlockDeviceIdentifier(d.Identifier); err != nil {
			return fmt.Errorf("disk %s: set identifier: %w", d.Identifier, err)
		}
		devices = append(devices, device)
	}
	c.SetStorageDevicesVirtualMachineConfiguration(devices)
	return nil
}

func cachingMode(m CachingMode) vz.DiskImageCachingMode {
	switch m {
	case CachingCached:
		return vz.DiskImageCachingModeCached
	case CachingUncached:
		return vz.DiskImageCachingModeUncached
	}
	return vz.DiskImageCachingModeAutomatic
}

func syncMode(m SyncMode) vz.DiskImageSynchronizationMode {
	switch m {
	case SyncFsync:
		return vz.DiskImageSynchronizationModeFsync
	case SyncNone:
		return vz.DiskImageSynchronizationModeNone
	}
	return vz.DiskImageSynchronizationModeFull
}

func attachNICs(c *vz.VirtualMachineConfiguration, cfg *Config, ends *hostEnds, dir string) error {
	var devices []*vz.VirtioNetworkDeviceConfiguration
	for i, n := range cfg.NICs {
		var attachment vz.NetworkDeviceAttachment
		switch n.Kind {
		case NetworkFileHandle:
			if n.File == nil {
				return fmt.Errorf("nic %d: no socket from the shim", i)
			}
			ends.keep(n.File)
			fh, err := vz.NewFileHandleNetworkDeviceAttachment(n.File)
			if err != nil {
				return fmt.Errorf("nic %d: %w", i, err)
			}
			if n.MTU != 0 {
				// macOS 13+ (which the console ports need anyway); the
				// socket's buffers are sized for it (network/switchport).
				if err := fh.SetMaximumTransmissionUnit(n.MTU); err != nil {
					return fmt.Errorf("nic %d: MTU %d: %w", i, n.MTU, err)
				}
			}
			attachment = fh
		default:
			return fmt.Errorf("nic %d: unknown kind %q", i, n.Kind)
		}
		device, err := vz.NewVirtioNetworkDeviceConfiguration(attachment)
		if err != nil {
			return fmt.Errorf("nic %d: %w", i, err)
		}
		hw, err := net.ParseMAC(n.MAC)
		if err != nil {
			return fmt.Errorf("nic %d: %w", i, err)
		}
		mac, err := vz.NewMACAddress(hw)
		if err != nil {
			return fmt.Errorf("nic %d: %w", i, err)
		}
		device.SetMACAddress(mac)
		devices = append(devices, device)
	}
	c.SetNetworkDevicesVirtualMachineConfiguration(devices)
	return nil
}

func attachShares(c *vz.VirtualMachineConfiguration, cfg *Config, _ *hostEnds, _ string) error {
	var devices []vz.DirectorySharingDeviceConfiguration
	for _, s := range cfg.Shares {
		dir, err := vz.NewSharedDirectory(s.HostPath, s.ReadOnly)
		if err != nil {
			return fmt.Errorf("share %s (%s): %w", s.Tag, s.HostPath, err)
		}
		share, err := vz.NewSingleDirectoryShare(dir)
		if err != nil {
			return fmt.Errorf("share %s: %w", s.Tag, err)
		}
		device, err := vz.NewVirtioFileSystemDeviceConfiguration(s.Tag)
		if err != nil {
			return fmt.Errorf("share %s: %w", s.Tag, err)
		}
		device.SetDirectoryShare(share)
		devices = append(devices, device)
	}
	if cfg.Rosetta != nil {
		device, err := newRosettaDevice(cfg.Rosetta)
		if err != nil {
			return err
		}
		devices = append(devices, device)
	}
	c.SetDirectorySharingDevicesVirtualMachineConfiguration(devices)
	return nil
}

func attachEntropyAndBalloon(c *vz.VirtualMachineConfiguration, cfg *Config, _ *hostEnds, _ string) error {
	if cfg.Entropy {
		entropy, err := vz.NewVirtioEntropyDeviceConfiguration()
		if err != nil {
			return fmt.Errorf("entropy: %w", err)
		}
		c.SetEntropyDevicesVirtualMachineConfiguration([]*vz.VirtioEntropyDeviceConfiguration{entropy})
	}
	if cfg.Balloon {
		balloon, err := vz.NewVirtioTraditionalMemoryBalloonDeviceConfiguration()
		if err != nil {
			return fmt.Errorf("memory balloon: %w", err)
		}
		c.SetMemoryBalloonDevicesVirtualMachineConfiguration([]vz.MemoryBalloonDeviceConfiguration{balloon})
	}
	return nil
}
