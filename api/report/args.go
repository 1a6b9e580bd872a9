package report

import (
	"maps"
	"slices"
	"strconv"
)

// CallArgs is what a recorder saw of the arguments that matter of one call
// (ArgCalls) made with one ABI: every call of it, so a value absent here was
// never passed. A call a workload made (Workload.Syscalls) without an entry
// in Workload.Args had its arguments not recorded: any of them may have
// been passed. Each list is sorted; names come from this package's tables
// (NamespaceFlags, SocketFamilies, SocketTypes, PrctlOptions), values
// without a name are decimal numbers.
type CallArgs struct {
	// Namespaces (clone, unshare, setns) are the namespace flags
	// (CLONE_NEW*) passed, OR-ed over all calls; empty: never one.
	Namespaces []string `json:"namespaces,omitempty"`
	// AnyNamespace (setns): setns(fd, 0) was called, which joins any type
	// of namespace fd refers to.
	AnyNamespace bool `json:"anyNamespace,omitempty"`
	// Families (socket, socketpair) are the address families (AF_*).
	Families []string `json:"families,omitempty"`
	// Types (socket, socketpair) are the socket types (SOCK_*), without
	// SOCK_NONBLOCK and SOCK_CLOEXEC.
	Types []string `json:"types,omitempty"`
	// Values (personality) are the personas passed.
	Values []uint32 `json:"values,omitempty"`
	// Options (prctl) are the options (PR_*) passed.
	Options []string `json:"options,omitempty"`
	// Overflow (personality, prctl, socket families): more distinct values
	// were passed than the recorder keeps, so any value may have been.
	Overflow bool `json:"overflow,omitempty"`
}

// The calls whose arguments a recorder records, and which fields of
// CallArgs each may have.
const (
	argNamespaces = 1 << iota
	argAnyNamespace
	argFamilies
	argTypes
	argValues
	argOptions
	argOverflow
)

// argCalls maps the name of each call whose arguments are recorded to the
// CallArgs fields it may have (arg* bits).
var argCalls = map[string]int{
	"clone":       argNamespaces,
	"unshare":     argNamespaces,
	"setns":       argNamespaces | argAnyNamespace,
	"socket":      argFamilies | argTypes | argOverflow,
	"socketpair":  argFamilies | argTypes | argOverflow,
	"personality": argValues | argOverflow,
	"prctl":       argOptions | argOverflow,
}

// ArgCalls returns the names of the calls whose arguments are recorded,
// sorted.
func ArgCalls() []string { return slices.Sorted(maps.Keys(argCalls)) }

// NamespaceFlags names the namespace flags, include/uapi/linux/sched.h.
var NamespaceFlags = map[uint64]string{
	0x00000080: "CLONE_NEWTIME",
	0x00020000: "CLONE_NEWNS",
	0x02000000: "CLONE_NEWCGROUP",
	0x04000000: "CLONE_NEWUTS",
	0x08000000: "CLONE_NEWIPC",
	0x10000000: "CLONE_NEWUSER",
	0x20000000: "CLONE_NEWPID",
	0x40000000: "CLONE_NEWNET",
}

// SocketFamilies names the address families, include/linux/socket.h
// (AF_MAX 46 in 6.18).
var SocketFamilies = map[uint64]string{
	0: "AF_UNSPEC", 1: "AF_UNIX", 2: "AF_INET", 3: "AF_AX25", 4: "AF_IPX",
	5: "AF_APPLETALK", 6: "AF_NETROM", 7: "AF_BRIDGE", 8: "AF_ATMPVC",
	9: "AF_X25", 10: "AF_INET6", 11: "AF_ROSE", 12: "AF_DECnet",
	13: "AF_NETBEUI", 14: "AF_SECURITY", 15: "AF_KEY", 16: "AF_NETLINK",
	17: "AF_PACKET", 18: "AF_ASH", 19: "AF_ECONET", 20: "AF_ATMSVC",
	21: "AF_RDS", 22: "AF_SNA", 23: "AF_IRDA", 24: "AF_PPPOX",
	25: "AF_WANPIPE", 26: "AF_LLC", 27: "AF_IB", 28: "AF_MPLS", 29: "AF_CAN",
	30: "AF_TIPC", 31: "AF_BLUETOOTH", 32: "AF_IUCV", 33: "AF_RXRPC",
	34: "AF_ISDN", 35: "AF_PHONET", 36: "AF_IEEE802154", 37: "AF_CAIF",
	38: "AF_ALG", 39: "AF_NFC", 40: "AF_VSOCK", 41: "AF_KCM", 42: "AF_QIPCRTR",
	43: "AF_SMC", 44: "AF_XDP", 45: "AF_MCTP",
}

// SocketTypes names the socket types, include/linux/net.h (enum sock_type).
var SocketTypes = map[uint64]string{
	1: "SOCK_STREAM", 2: "SOCK_DGRAM", 3: "SOCK_RAW", 4: "SOCK_RDM",
	5: "SOCK_SEQPACKET", 6: "SOCK_DCCP", 10: "SOCK_PACKET",
}

// PrctlOptions names the prctl options, include/uapi/linux/prctl.h (the
// ones Debian 12's linux-libc-dev has; newer ones are written as numbers).
var PrctlOptions = map[uint64]string{
	1: "PR_SET_PDEATHSIG", 2: "PR_GET_PDEATHSIG", 3: "PR_GET_DUMPABLE",
	4: "PR_SET_DUMPABLE", 5: "PR_GET_UNALIGN", 6: "PR_SET_UNALIGN",
	7: "PR_GET_KEEPCAPS", 8: "PR_SET_KEEPCAPS", 9: "PR_GET_FPEMU",
	10: "PR_SET_FPEMU", 11: "PR_GET_FPEXC", 12: "PR_SET_FPEXC",
	13: "PR_GET_TIMING", 14: "PR_SET_TIMING", 15: "PR_SET_NAME",
	16: "PR_GET_NAME", 19: "PR_GET_ENDIAN", 20: "PR_SET_ENDIAN",
	21: "PR_GET_SECCOMP", 22: "PR_SET_SECCOMP", 23: "PR_CAPBSET_READ",
	24: "PR_CAPBSET_DROP", 25: "PR_GET_TSC", 26: "PR_SET_TSC",
	27: "PR_GET_SECUREBITS", 28: "PR_SET_SECUREBITS", 29: "PR_SET_TIMERSLACK",
	30: "PR_GET_TIMERSLACK", 31: "PR_TASK_PERF_EVENTS_DISABLE",
	32: "PR_TASK_PERF_EVENTS_ENABLE", 33: "PR_MCE_KILL", 34: "PR_MCE_KILL_GET",
	35: "PR_SET_MM", 36: "PR_SET_CHILD_SUBREAPER", 37: "PR_GET_CHILD_SUBREAPER",
	38: "PR_SET_NO_NEW_PRIVS", 39: "PR_GET_NO_NEW_PRIVS",
	40: "PR_GET_TID_ADDRESS", 41: "PR_SET_THP_DISABLE", 42: "PR_GET_THP_DISABLE",
	43: "PR_MPX_ENABLE_MANAGEMENT", 44: "PR_MPX_DISABLE_MANAGEMENT",
	45: "PR_SET_FP_MODE", 46: "PR_GET_FP_MODE", 47: "PR_CAP_AMBIENT",
	50: "PR_SVE_SET_VL", 51: "PR_SVE_GET_VL", 52: "PR_GET_SPECULATION_CTRL",
	53: "PR_SET_SPECULATION_CTRL", 54: "PR_PAC_RESET_KEYS",
	55: "PR_SET_TAGGED_ADDR_CTRL", 56: "PR_GET_TAGGED_ADDR_CTRL",
	57: "PR_SET_IO_FLUSHER", 58: "PR_GET_IO_FLUSHER",
	59: "PR_SET_SYSCALL_USER_DISPATCH", 60: "PR_PAC_SET_ENABLED_KEYS",
	61: "PR_PAC_GET_ENABLED_KEYS", 62: "PR_SCHED_CORE", 63: "PR_SME_SET_VL",
	64: "PR_SME_GET_VL", 0x53564d41: "PR_SET_VMA", 0x59616d61: "PR_SET_PTRACER",
}

// ArgName returns the report's name of value in table: its name, or the
// decimal number when the table has none.
func ArgName(table map[uint64]string, value uint64) string {
	if n, ok := table[value]; ok {
		return n
	}
	return strconv.FormatUint(value, 10)
}

// ArgValue returns the value a report's name stands for in table (a name
// of the table or a decimal number no larger than max), and false for
// anything else. Recommenders turn names back into condition values with it.
func ArgValue(table map[uint64]string, name string, max uint64) (uint64, bool) {
	for v, n := range table {
		if n == name {
			return v, true
		}
	}
	v, err := strconv.ParseUint(name, 10, 64)
	if err != nil || v > max || strconv.FormatUint(v, 10) != name {
		return 0, false
	}
	if _, named := table[v]; named {
		return 0, false // a named value is written by its name
	}
	return v, true
}

// fields says which of c's fields are set, as arg* bits.
func (c CallArgs) fields() int {
	f := 0
	for _, x := range []struct {
		set bool
		bit int
	}{
		{len(c.Namespaces) > 0, argNamespaces}, {c.AnyNamespace, argAnyNamespace},
		{len(c.Families) > 0, argFamilies}, {len(c.Types) > 0, argTypes},
		{len(c.Values) > 0, argValues}, {len(c.Options) > 0, argOptions},
		{c.Overflow, argOverflow},
	} {
		if x.set {
			f |= x.bit
		}
	}
	return f
}

// validateArgs checks workload i's Args: known ABIs with the call in its
// Syscalls, a recorded call, only its own fields, every name known or a
// number in range. Why strict: recommend turns these into conditions, and
// a misspelt name must not become "never seen".
func validateArgs(i int, w Workload) error {
	for _, abi := range slices.Sorted(maps.Keys(w.Args)) {
		if _, ok := ArchOf(abi); !ok {
			return invalid("workloads[%d].args: %q: unknown ABI (want %s)", i, abi, abiNames())
		}
		for _, call := range slices.Sorted(maps.Keys(w.Args[abi])) {
			allowed, ok := argCalls[call]
			if !ok {
				return invalid("workloads[%d].args.%s: %q: arguments are recorded only for %v", i, abi, call, ArgCalls())
			}
			if !slices.Contains(w.Syscalls[abi], call) {
				return invalid("workloads[%d].args.%s.%s: not in syscalls.%s", i, abi, call, abi)
			}
			c := w.Args[abi][call]
			if extra := c.fields() &^ allowed; extra != 0 {
				return invalid("workloads[%d].args.%s.%s: fields another call's (%s)", i, abi, call, fieldNames(extra))
			}
			for _, l := range []struct {
				field string
				names []string
				table map[uint64]string
				max   uint64
			}{
				{"namespaces", c.Namespaces, NamespaceFlags, 0}, // only named flags are recorded
				{"families", c.Families, SocketFamilies, 62},
				{"types", c.Types, SocketTypes, 15},
				{"options", c.Options, PrctlOptions, 1<<32 - 1},
			} {
				for j, n := range l.names {
					if l.max == 0 && !slices.Contains(slices.Collect(maps.Values(l.table)), n) {
						return invalid("workloads[%d].args.%s.%s.%s[%d]: %q: not a namespace flag (CLONE_NEW*)", i, abi, call, l.field, j, n)
					}
					if _, ok := ArgValue(l.table, n, l.max); !ok {
						return invalid("workloads[%d].args.%s.%s.%s[%d]: %q: not a name of the table nor a number up to %d", i, abi, call, l.field, j, n, l.max)
					}
				}
			}
		}
	}
	return nil
}

// fieldNames names arg* bits for messages.
func fieldNames(bits int) []string {
	var out []string
	for i, n := range []string{"namespaces", "anyNamespace", "families", "types", "values", "options", "overflow"} {
		if bits&(1<<i) != 0 {
			out = append(out, n)
		}
	}
	return out
}

// mergeArgs unions o's recorded arguments into w's, before their Syscalls
// are merged: a call one side made without recorded arguments (any) makes
// the union unrecorded too; a call only one side made keeps that side's.
// MergeArgs merges o's recorded arguments into w's as Add does: call it
// before w's Syscalls take o's, since a call one side made without
// recorded arguments leaves it unrecorded (any arguments). For collectors
// that keep their own index of workloads (discover/cluster's union).
func (w *Workload) MergeArgs(o Workload) { w.mergeArgs(o) }

func (w *Workload) mergeArgs(o Workload) {
	abis := map[string]bool{}
	for abi := range w.Args {
		abis[abi] = true
	}
	for abi := range o.Args {
		abis[abi] = true
	}
	out := map[string]map[string]CallArgs{}
	for abi := range abis {
		for call := range argCalls {
			a, inA := w.Args[abi][call]
			b, inB := o.Args[abi][call]
			madeA := slices.Contains(w.Syscalls[abi], call)
			madeB := slices.Contains(o.Syscalls[abi], call)
			if (madeA && !inA) || (madeB && !inB) || (!inA && !inB) {
				continue
			}
			if out[abi] == nil {
				out[abi] = map[string]CallArgs{}
			}
			out[abi][call] = CallArgs{
				Namespaces:   append(slices.Clone(a.Namespaces), b.Namespaces...),
				AnyNamespace: a.AnyNamespace || b.AnyNamespace,
				Families:     append(slices.Clone(a.Families), b.Families...),
				Types:        append(slices.Clone(a.Types), b.Types...),
				Values:       append(slices.Clone(a.Values), b.Values...),
				Options:      append(slices.Clone(a.Options), b.Options...),
				Overflow:     a.Overflow || b.Overflow,
			}
		}
	}
	w.Args = nil
	if len(out) > 0 {
		w.Args = out
	}
}

// normalizeArgs sorts and deduplicates every list, and drops empty ABIs,
// so equal observations are equal bytes.
func (w *Workload) normalizeArgs() {
	for abi, calls := range w.Args {
		if len(calls) == 0 {
			delete(w.Args, abi)
			continue
		}
		for call, c := range calls {
			for _, l := range []*[]string{&c.Namespaces, &c.Families, &c.Types, &c.Options} {
				slices.Sort(*l)
				*l = slices.Compact(*l)
				if len(*l) == 0 {
					*l = nil
				}
			}
			slices.Sort(c.Values)
			c.Values = slices.Compact(c.Values)
			if len(c.Values) == 0 {
				c.Values = nil
			}
			calls[call] = c
		}
	}
	if len(w.Args) == 0 {
		w.Args = nil
	}
}
