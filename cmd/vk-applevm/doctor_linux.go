package main

const (
	hypervisorFix = "install QEMU and virtiofsd (make deps, or apt-get install qemu-system-x86 qemu-system-common virtiofsd)"
	guestFix      = "build the guest bundle (make guest)"
)
