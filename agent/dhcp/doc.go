// Package dhcp is the guest agent's DHCPv4 client (RFC 2131, options from
// RFC 2132): under vz the VM's NIC uses VZNATNetworkDeviceAttachment and
// macOS's bootpd hands out its address.
//
// The protocol (message and option encoding, the DISCOVER → OFFER →
// REQUEST → ACK exchange with retransmission, lease renewal at T1 and
// rebinding at T2) is plain Go and unit-tested on any OS. Only the
// transports are Linux-specific:
//
//   - Before the interface has an address, an AF_PACKET socket (SOCK_DGRAM:
//     the kernel adds the Ethernet header) bound to the interface carries
//     IPv4+UDP packets built here, from 0.0.0.0. It receives the server's
//     reply however it is addressed: broadcast, or unicast to the offered
//     address, which the IP stack would drop because the address is not
//     local yet. A UDP socket with SO_BINDTODEVICE could only do the first,
//     depends on the server honouring the broadcast flag, and takes its
//     source address from any other configured interface. A classic BPF
//     filter keeps everything but UDP to port 68 out of the socket.
//   - Once the address is configured, renewals go through an ordinary UDP
//     socket bound to the interface: unicast to the server (RENEWING) or
//     broadcast (REBINDING), as RFC 2131 §4.4.5 asks, and the kernel routes
//     and resolves the server's MAC.
//
// Both use golang.org/x/sys/unix and the standard library only: no new
// module, a few KiB of buffers, nothing resident between renewals but one
// goroutine and its timer (the agent's budget is 10 MiB RSS).
package dhcp
