package discover

import (
	"math/bits"
	"slices"

	"github.com/kubearmor/kscmp/api/report"
	"github.com/kubearmor/kscmp/bpf"
)

// argsOf turns the kernel's arg set of a key's native ABI into the report's
// form, for the calls the key made (names: the ABI's set). A call made has
// an entry even when it passed nothing that matters (clone without
// namespace flags), so "never a namespace" is told apart from "not
// recorded" (report.CallArgs).
func argsOf(a *bpf.RecorderArgSet, names []string) map[string]report.CallArgs {
	out := map[string]report.CallArgs{}
	made := func(call string) bool { return slices.Contains(names, call) }
	if made("clone") {
		out["clone"] = report.CallArgs{Namespaces: flagNames(a.CloneNs, report.NamespaceFlags)}
	}
	if made("unshare") {
		out["unshare"] = report.CallArgs{Namespaces: flagNames(a.UnshareNs, report.NamespaceFlags)}
	}
	if made("setns") {
		out["setns"] = report.CallArgs{
			Namespaces:   flagNames(a.SetnsNs&^bpf.SetnsAny, report.NamespaceFlags),
			AnyNamespace: a.SetnsNs&bpf.SetnsAny != 0,
		}
	}
	if made("socket") {
		out["socket"] = socketArgs(a.SocketFamilies, a.SocketTypes)
	}
	if made("socketpair") {
		out["socketpair"] = socketArgs(a.SocketpairFamilies, a.SocketpairTypes)
	}
	if made("personality") {
		out["personality"] = report.CallArgs{Values: slotValues(a.Personas[:]), Overflow: a.Overflow&bpf.ArgPersonaOverflow != 0}
	}
	if made("prctl") {
		opts := numberNames(a.PrctlOptions[:], report.PrctlOptions)
		for _, v := range slotValues(a.PrctlLarge[:]) {
			opts = append(opts, report.ArgName(report.PrctlOptions, uint64(v)))
		}
		out["prctl"] = report.CallArgs{Options: opts, Overflow: a.Overflow&bpf.ArgPrctlOverflow != 0}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// socketArgs names a family mask (bit bpf.FamilyOther: a family the mask
// cannot hold, so any) and a type mask.
func socketArgs(families uint64, types uint32) report.CallArgs {
	return report.CallArgs{
		Families: numberNames([]uint64{families &^ (1 << bpf.FamilyOther)}, report.SocketFamilies),
		Types:    numberNames([]uint64{uint64(types)}, report.SocketTypes),
		Overflow: families&(1<<bpf.FamilyOther) != 0,
	}
}

// numberNames names the numbers of a bitmask of small numbers (bit b of
// words[w] is the number 64*w+b) with table.
func numberNames(words []uint64, table map[uint64]string) []string {
	var out []string
	for w, mask := range words {
		for mask != 0 {
			b := bits.TrailingZeros64(mask)
			mask &^= 1 << b
			out = append(out, report.ArgName(table, uint64(64*w+b)))
		}
	}
	return out
}

// flagNames names the flags set in mask with table (the recorder keeps only
// flags the table names).
func flagNames(mask uint64, table map[uint64]string) []string {
	var out []string
	for mask != 0 {
		b := bits.TrailingZeros64(mask)
		mask &^= 1 << b
		out = append(out, report.ArgName(table, 1<<b))
	}
	return out
}

// slotValues returns the values of the used value slots.
func slotValues(slots []uint64) []uint32 {
	var out []uint32
	for _, s := range slots {
		if s&bpf.ArgSlotUsed != 0 {
			out = append(out, uint32(s))
		}
	}
	return out
}
