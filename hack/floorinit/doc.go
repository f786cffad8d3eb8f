// Command floorinit is the benchmark floor: a trivial PID 1 that does only
// what any guest must do before the host can talk to it — load the modules
// of the agent's console port, open the port — and then says "ready".
// Booting it measures kernel + channel, the floor that the real agent's
// ready time is compared with. vm/qemu also boots it to probe KVM.
//
// The kernel command line selects a mode (vkavfloor=...; a parameter with
// '=' and no '.' reaches init's environment):
//
//	(none)   load the port prefix of modules.list, write "ready\n", power off
//	serials  load every module, write "ready\n" then one "serial <dev> <serial>\n"
//	         line per /sys/block/*/serial and one "mac <iface> <address>\n" per
//	         network interface, then "done\n", power off
//	net      load every module, write "ready\n", configure eth0 from
//	         vkavnet=<guest-ip>/<prefix>,<host-ip>:<port>,<MiB>, send that many
//	         MiB over TCP to the host, write "sent\n", power off (a throughput
//	         probe for vm/qemu's tap benchmark)
//	wait     load every module, write "ready\n", power off on the ACPI power
//	         button (QEMU system_powerdown) or when the host writes "poweroff\n"
//
// On platforms other than Linux it builds to a stub that exits.
package main
