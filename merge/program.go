package merge

import (
	"encoding/binary"
	"fmt"
	"runtime"

	seccomp "github.com/elastic/go-seccomp-bpf"
	"github.com/elastic/go-seccomp-bpf/arch"
	"golang.org/x/net/bpf"

	"github.com/kubearmor/kscmp/api"
)

// seccomp_data offsets: the call's number, its ABI, then six 64-bit
// arguments.
const (
	offNr   = 0
	offArch = 4
	offArgs = 16
	// maxInsns is the kernel's limit on a classic BPF program.
	maxInsns = 4096
)

// Program returns the in-process filter as a classic BPF program for this
// process's native ABI: kscmp's own block for the calls with argument
// conditions, then go-seccomp-bpf's program (Filter) for the others.
//
// Why not go-seccomp-bpf's conditions alone: v1.6.0 compares the call
// number again after a failed argument test without reloading it, so every
// group after a conditional entry compares an argument with call numbers
// and falls through to the default (merge's fuzz test found it running the
// program). kscmp's block reloads the number after each call's conditions
// and ends each such call with its own default, so the library's groups
// never see a call with conditions.
func (r *RuleSet) Program() (prog []bpf.Instruction, skipped []string, err error) {
	native, err := arch.GetInfo(runtime.GOARCH)
	if err != nil {
		return nil, nil, fmt.Errorf("in-process filter: %w", err)
	}
	def := seccompRet(r.DefaultAction)
	var body []bpf.Instruction
	for i := range r.Syscalls {
		s := &r.Syscalls[i]
		regs, err := s.regions(r.DefaultAction)
		if err != nil {
			return nil, nil, fmt.Errorf("in-process filter: %w", err)
		}
		if len(regs) == 0 || (s.Errno == 0 && len(regs) == 1 && len(regs[0].terms) == 1 && len(regs[0].terms[0]) == 0) {
			continue // no condition: the library's part
		}
		nr, ok := native.SyscallNames[s.Name]
		if !ok {
			skipped = append(skipped, s.Name)
			continue
		}
		var call []bpf.Instruction
		if s.Errno != 0 {
			regs = nil
			def := def
			if s.Action == api.ActionBlock {
				def = uint32(seccomp.ActionErrno) | uint32(s.Errno)
			}
			call = append(call, bpf.RetConstant{Val: def})
		}
		for _, reg := range regs {
			for _, t := range reg.terms {
				call = append(call, termProgram(t, seccompRet(reg.action))...)
			}
		}
		call = append(call, bpf.RetConstant{Val: def})
		body = append(body,
			bpf.JumpIf{Cond: bpf.JumpEqual, Val: uint32(nr | native.SeccompMask), SkipTrue: 1},
			bpf.Jump{Skip: uint32(len(call))})
		body = append(body, call...)
	}
	lib, libSkipped, err := r.Filter()
	if err != nil && len(body) == 0 {
		return nil, nil, err
	}
	skipped = append(skipped, libSkipped...)
	var tail []bpf.Instruction
	if err == nil {
		if tail, err = lib.Policy.Assemble(); err != nil {
			return nil, nil, fmt.Errorf("in-process filter: %w", err)
		}
	} else {
		tail = []bpf.Instruction{bpf.RetConstant{Val: def}}
	}
	if len(body) > 0 {
		// Only the native ABI's calls below the x32 bit enter the block;
		// the library's program checks the rest.
		body = append([]bpf.Instruction{bpf.LoadAbsolute{Off: offNr, Size: 4}}, body...)
		if native.ID == arch.X86_64.ID {
			body = append([]bpf.Instruction{bpf.LoadAbsolute{Off: offNr, Size: 4},
				bpf.JumpIf{Cond: bpf.JumpLessThan, Val: uint32(arch.X32.SeccompMask), SkipTrue: 1},
				bpf.Jump{Skip: uint32(len(body))}}, body...)
		}
		body = append([]bpf.Instruction{bpf.LoadAbsolute{Off: offArch, Size: 4},
			bpf.JumpIf{Cond: bpf.JumpEqual, Val: uint32(native.ID), SkipTrue: 1},
			bpf.Jump{Skip: uint32(len(body))}}, body...)
	}
	prog = append(body, tail...)
	if len(prog) > maxInsns {
		return nil, nil, fmt.Errorf("in-process filter: %w: %d BPF instructions, the kernel takes at most %d", ErrTooComplex, len(prog), maxInsns)
	}
	return prog, skipped, nil
}

// seccompRet is the SECCOMP_RET_* value of an action (EPERM for Block).
func seccompRet(a api.Action) uint32 {
	switch a {
	case api.ActionAllow:
		return uint32(seccomp.ActionAllow)
	case api.ActionAudit:
		return uint32(seccomp.ActionLog)
	case api.ActionKill:
		return uint32(seccomp.ActionKillProcess)
	}
	return uint32(seccomp.ActionErrno) | 1 // EPERM
}

// termProgram tests one conjunction and returns ret when every comparison
// holds; otherwise it falls through to the instruction after it. Each
// 64-bit comparison is two 32-bit ones, high word first; a jump to "pass"
// leaves the comparison early, one to "fail" leaves the term.
func termProgram(t []api.Resolved, ret uint32) []bpf.Instruction {
	type insn struct {
		in     bpf.Instruction
		onTrue string // "", "pass" or "fail": where JumpIf goes when true
	}
	var parts [][]insn
	for _, c := range t {
		hiOff, loOff := uint32(offArgs+8*c.Index+4), uint32(offArgs+8*c.Index)
		if bigEndian() {
			hiOff, loOff = loOff, hiOff
		}
		ldHi, ldLo := bpf.LoadAbsolute{Off: hiOff, Size: 4}, bpf.LoadAbsolute{Off: loOff, Size: 4}
		vh, vl := uint32(c.Value>>32), uint32(c.Value)
		j := func(cond bpf.JumpTest, v uint32, to string) insn { return insn{bpf.JumpIf{Cond: cond, Val: v}, to} }
		var p []insn
		switch c.Operator {
		case api.OpEqual:
			p = []insn{{ldHi, ""}, j(bpf.JumpNotEqual, vh, "fail"), {ldLo, ""}, j(bpf.JumpNotEqual, vl, "fail")}
		case api.OpNotEqual:
			p = []insn{{ldHi, ""}, j(bpf.JumpNotEqual, vh, "pass"), {ldLo, ""}, j(bpf.JumpEqual, vl, "fail")}
		case api.OpGreaterThan:
			p = []insn{{ldHi, ""}, j(bpf.JumpGreaterThan, vh, "pass"), j(bpf.JumpNotEqual, vh, "fail"), {ldLo, ""}, j(bpf.JumpLessOrEqual, vl, "fail")}
		case api.OpGreaterEqual:
			p = []insn{{ldHi, ""}, j(bpf.JumpGreaterThan, vh, "pass"), j(bpf.JumpNotEqual, vh, "fail"), {ldLo, ""}, j(bpf.JumpLessThan, vl, "fail")}
		case api.OpLessThan:
			p = []insn{{ldHi, ""}, j(bpf.JumpLessThan, vh, "pass"), j(bpf.JumpNotEqual, vh, "fail"), {ldLo, ""}, j(bpf.JumpGreaterOrEqual, vl, "fail")}
		case api.OpLessEqual:
			p = []insn{{ldHi, ""}, j(bpf.JumpLessThan, vh, "pass"), j(bpf.JumpNotEqual, vh, "fail"), {ldLo, ""}, j(bpf.JumpGreaterThan, vl, "fail")}
		case api.OpMaskedEqual:
			mh, ml := uint32(c.Mask>>32), uint32(c.Mask)
			p = []insn{{ldHi, ""}, {bpf.ALUOpConstant{Op: bpf.ALUOpAnd, Val: mh}, ""}, j(bpf.JumpNotEqual, vh, "fail"),
				{ldLo, ""}, {bpf.ALUOpConstant{Op: bpf.ALUOpAnd, Val: ml}, ""}, j(bpf.JumpNotEqual, vl, "fail")}
		}
		parts = append(parts, p)
	}
	total := 1 // the ret
	for _, p := range parts {
		total += len(p)
	}
	out := make([]bpf.Instruction, 0, total)
	for _, p := range parts {
		end := len(out) + len(p) // the next comparison
		for _, in := range p {
			if jmp, ok := in.in.(bpf.JumpIf); ok {
				target := end
				if in.onTrue == "fail" {
					target = total
				}
				jmp.SkipTrue = uint8(target - len(out) - 1)
				in.in = jmp
			}
			out = append(out, in.in)
		}
	}
	return append(out, bpf.RetConstant{Val: ret})
}

// bigEndian reports whether the host stores the high word of an argument
// first (seccomp_data is in host order).
func bigEndian() bool { return binary.NativeEndian.Uint16([]byte{0, 1}) == 1 }
