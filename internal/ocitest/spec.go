package ocitest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// DefaultCapabilities returns the capability set that Docker and containerd
// (and so Kubernetes) give a container by default, as a new slice.
func DefaultCapabilities() []string {
	return []string{
		"CAP_CHOWN",
		"CAP_DAC_OVERRIDE",
		"CAP_FSETID",
		"CAP_FOWNER",
		"CAP_MKNOD",
		"CAP_NET_RAW",
		"CAP_SETGID",
		"CAP_SETUID",
		"CAP_SETFCAP",
		"CAP_SETPCAP",
		"CAP_NET_BIND_SERVICE",
		"CAP_SYS_CHROOT",
		"CAP_KILL",
		"CAP_AUDIT_WRITE",
	}
}

// ociVersion is the ociVersion written to config.json.
const ociVersion = "1.0.2"

// standardPath is the PATH of a container unless Container.Env sets one,
// and the PATH the runtime runs with.
const standardPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// defaultMounts follows containerd's default spec (without /run and the
// cgroup filesystem).
func defaultMounts() []specs.Mount {
	return []specs.Mount{
		{Destination: "/proc", Type: "proc", Source: "proc", Options: []string{"nosuid", "noexec", "nodev"}},
		{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
		{Destination: "/dev/pts", Type: "devpts", Source: "devpts", Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"}},
		{Destination: "/dev/shm", Type: "tmpfs", Source: "shm", Options: []string{"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"}},
		{Destination: "/dev/mqueue", Type: "mqueue", Source: "mqueue", Options: []string{"nosuid", "noexec", "nodev"}},
		{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: []string{"nosuid", "noexec", "nodev", "ro"}},
	}
}

// buildSpec turns a Container into an OCI runtime configuration resembling
// the one containerd generates for a Kubernetes container.
func buildSpec(c Container) (*specs.Spec, error) {
	if len(c.Args) == 0 {
		return nil, errors.New("ocitest: Container.Args is empty")
	}
	if c.Rootfs == "" {
		return nil, errors.New("ocitest: Container.Rootfs is empty")
	}
	rootfs, err := filepath.Abs(c.Rootfs)
	if err != nil {
		return nil, fmt.Errorf("ocitest: rootfs: %w", err)
	}
	var seccomp *specs.LinuxSeccomp
	if c.Seccomp != nil {
		if seccomp, err = parseSeccomp(c.Seccomp); err != nil {
			return nil, err
		}
	}
	caps := c.Capabilities
	if caps == nil {
		caps = DefaultCapabilities()
	}
	cwd := c.Cwd
	if cwd == "" {
		cwd = "/"
	}
	hostname := c.Hostname
	if hostname == "" {
		hostname = "ocitest"
	}
	spec := &specs.Spec{
		// crun 1.8 rejects an ociVersion without "1.0"; the configuration
		// uses nothing newer than runtime-spec 1.0.2.
		Version: ociVersion,
		Process: &specs.Process{
			User: c.User,
			Args: append([]string(nil), c.Args...),
			Env:  mergeEnv([]string{standardPath, "HOSTNAME=" + hostname}, c.Env),
			Cwd:  cwd,
			Capabilities: &specs.LinuxCapabilities{
				Bounding:  append([]string{}, caps...),
				Effective: append([]string{}, caps...),
				Permitted: append([]string{}, caps...),
			},
			NoNewPrivileges: c.NoNewPrivileges,
		},
		Root:     &specs.Root{Path: rootfs, Readonly: c.ReadonlyRootfs},
		Hostname: hostname,
		Mounts:   append(defaultMounts(), c.Mounts...),
		Linux: &specs.Linux{
			Namespaces: []specs.LinuxNamespace{
				{Type: specs.PIDNamespace},
				{Type: specs.IPCNamespace},
				{Type: specs.UTSNamespace},
				{Type: specs.MountNamespace},
				{Type: specs.NetworkNamespace},
			},
			Resources: &specs.LinuxResources{
				// Deny device access except the runtime's default devices
				// (null, zero, full, random, urandom, tty, ptmx), as containerd does.
				Devices: []specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}},
			},
			MaskedPaths: []string{
				"/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys",
				"/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats",
				"/proc/sched_debug", "/proc/scsi", "/sys/firmware",
				"/sys/devices/virtual/powercap",
			},
			ReadonlyPaths: []string{
				"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger",
			},
			Seccomp: seccomp,
		},
	}
	if c.Adjust != nil {
		c.Adjust(spec)
	}
	return spec, nil
}

// parseSeccomp decodes a profile strictly into the runtime-spec type, so that
// a field the runtime would not see (a Docker-only archMap, includes, ...)
// is an error instead of being dropped silently.
func parseSeccomp(profile []byte) (*specs.LinuxSeccomp, error) {
	dec := json.NewDecoder(bytes.NewReader(profile))
	dec.DisallowUnknownFields()
	var s specs.LinuxSeccomp
	if err := dec.Decode(&s); err != nil {
		return nil, fmt.Errorf("ocitest: seccomp profile (runtime-spec LinuxSeccomp shape expected): %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("ocitest: seccomp profile: trailing data after the JSON object")
	}
	if s.DefaultAction == "" {
		return nil, errors.New("ocitest: seccomp profile: defaultAction is missing")
	}
	return &s, nil
}

// mergeEnv returns base with the entries of extra appended; an entry of
// extra replaces the base entry with the same name.
func mergeEnv(base, extra []string) []string {
	name := func(kv string) string { n, _, _ := strings.Cut(kv, "="); return n }
	override := make(map[string]bool, len(extra))
	for _, kv := range extra {
		override[name(kv)] = true
	}
	var env []string
	for _, kv := range base {
		if !override[name(kv)] {
			env = append(env, kv)
		}
	}
	return append(env, extra...)
}
