#!/bin/sh
# /init of cork's test guest (built by `cargo xtask guest`): loads the virtio and fw_cfg
# modules, configures eth0 from the kernel command line, runs the probe script cork gave
# it, prints what it printed between markers on the serial console, and powers off.
#
# Kernel command line keys (all optional):
#   cork.ip4=ADDR/LEN cork.gw4=ADDR    static IPv4 on eth0 and a default route
#   cork.ip6=ADDR/LEN cork.gw6=ADDR    static IPv6 on eth0 (no DAD) and a default route
#   cork.dhcp=1                        udhcpc on eth0 instead of cork.ip4
#   cork.probe=BASE64                  the probe script, when fw_cfg has none
# fw_cfg entries (QEMU -fw_cfg name=...):
#   opt/cork/probe   the probe script (run with /bin/sh)
#   opt/cork/env     NAME=VALUE lines, exported to the probe as they are (no shell parsing)
#   opt/cork/ca.pem  copied to /etc/ssl/certs/cork-ca.pem; CORK_CA names it
#
# Console protocol: "cork-guest: ..." status lines, then
#   CORK-PROBE-BEGIN / the probe's stdout+stderr / CORK-PROBE-END rc=N
# and the guest powers off. A failure before the probe prints "CORK-GUEST-ERROR: why"
# and powers off too, so a test never waits for a guest that cannot get there.

PATH=/bin:/sbin
export PATH

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /tmp /run /etc/ssl/certs
echo "cork-guest: init up ($(cut -d' ' -f1 /proc/uptime)s)"

fail() {
	echo "CORK-GUEST-ERROR: $*"
	poweroff -f
	exit 1
}

arg() {
	# The value of kernel command line key $1, empty when absent.
	for word in $(cat /proc/cmdline); do
		case "$word" in
		"$1"=*) echo "${word#*=}" ;;
		esac
	done
}

# Module order is not known for sure (the kernel package ships no modules.dep; depmod
# runs on install): insmod everything left in passes until a pass loads nothing more.
# xtask's load-order (dependencies first, from each module's modinfo) goes first, so one
# pass usually does it. Files are named after their module (xtask wrote them so).
order=$(cat /lib/modules/load-order 2>/dev/null)
for ko in /lib/modules/*.ko; do
	order="$order $(basename "$ko" .ko)"
done
while :; do
	progress=0
	for name in $order; do
		[ -d "/sys/module/$name" ] && continue
		insmod "/lib/modules/$name.ko" 2>/dev/null && progress=1
	done
	[ "$progress" = 1 ] || break
done
for ko in /lib/modules/*.ko; do
	name=$(basename "$ko" .ko)
	[ -d "/sys/module/$name" ] || echo "cork-guest: module $name did not load"
done

# QMP system_powerdown presses the ACPI power button: power off when it is pressed, as
# a stock image's init would.
for ev in /sys/class/input/event*; do
	[ "$(cat "$ev/device/name" 2>/dev/null)" = "Power Button" ] || continue
	(
		head -c 1 "/dev/${ev#/sys/class/}" > /dev/null 2>&1 || exit 0
		echo "cork-guest: power button pressed, powering off"
		poweroff -f
	) &
done

ip link set lo up

# The NIC appears when virtio binds it; bounded wait (5 s).
n=0
while [ ! -e /sys/class/net/eth0 ]; do
	n=$((n + 1))
	[ "$n" -gt 50 ] && fail "no eth0 (virtio-net did not bind)"
	sleep 0.1
done
# busybox ip has no nodad: switch duplicate address detection off before adding addresses
echo 0 > /proc/sys/net/ipv6/conf/eth0/accept_dad
ip link set eth0 up

ip4=$(arg cork.ip4)
gw4=$(arg cork.gw4)
ip6=$(arg cork.ip6)
gw6=$(arg cork.gw6)
if [ "$(arg cork.dhcp)" = 1 ]; then
	udhcpc -i eth0 -q -f -n -t 10 -T 1 -s /etc/udhcpc.script || fail "DHCPv4 got no lease"
fi
if [ -n "$ip4" ]; then
	ip addr add "$ip4" dev eth0 || fail "cannot add $ip4"
fi
if [ -n "$gw4" ]; then
	ip route add default via "$gw4" dev eth0 || fail "cannot route via $gw4"
fi
if [ -n "$ip6" ]; then
	ip -6 addr add "$ip6" dev eth0 || fail "cannot add $ip6"
fi
if [ -n "$gw6" ]; then
	ip -6 route add default via "$gw6" dev eth0 || fail "cannot route via $gw6"
fi

fwcfg=/sys/firmware/qemu_fw_cfg/by_name/opt/cork
if [ -r "$fwcfg/ca.pem/raw" ]; then
	cat "$fwcfg/ca.pem/raw" > /etc/ssl/certs/cork-ca.pem
	export CORK_CA=/etc/ssl/certs/cork-ca.pem
fi
if [ -r "$fwcfg/env/raw" ]; then
	while IFS= read -r line || [ -n "$line" ]; do
		case "$line" in
		[A-Za-z_]*=*) export "$line" ;;
		esac
	done < "$fwcfg/env/raw"
fi
if [ -r "$fwcfg/probe/raw" ]; then
	cat "$fwcfg/probe/raw" > /tmp/probe
elif [ -n "$(arg cork.probe)" ]; then
	arg cork.probe | base64 -d > /tmp/probe || fail "cork.probe is not base64"
else
	fail "no probe script (fw_cfg opt/cork/probe or cork.probe=)"
fi

echo "cork-guest: probe starts ($(cut -d' ' -f1 /proc/uptime)s)"
echo "CORK-PROBE-BEGIN"
sh /tmp/probe 2>&1
rc=$?
echo "CORK-PROBE-END rc=$rc"
poweroff -f
