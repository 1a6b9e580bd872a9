package ocitest

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
)

// ExitProgram returns a minimal x86-64 ELF executable that calls
// exit_group(code) and nothing else.
func ExitProgram(code byte) []byte {
	return program([]byte{
		0xbf, code, 0, 0, 0, // mov edi, code
		0xb8, 231, 0, 0, 0, // mov eax, 231 (exit_group)
		0x0f, 0x05, // syscall
	})
}

// StrictExitProgram returns a minimal x86-64 ELF executable that puts
// itself under seccomp's strict mode (prctl(PR_SET_SECCOMP,
// SECCOMP_MODE_STRICT)) and calls exit(0), which strict mode allows: the
// cheapest process that exits under seccomp, one thread, no libc.
func StrictExitProgram() []byte {
	return program([]byte{
		0xbf, 22, 0, 0, 0, // mov edi, 22 (PR_SET_SECCOMP)
		0xbe, 1, 0, 0, 0, // mov esi, 1 (SECCOMP_MODE_STRICT)
		0xb8, 157, 0, 0, 0, // mov eax, 157 (prctl)
		0x0f, 0x05, // syscall
		0x31, 0xff, // xor edi, edi
		0xb8, 60, 0, 0, 0, // mov eax, 60 (exit; strict mode refuses exit_group)
		0x0f, 0x05, // syscall
	})
}

// LoopProgram returns a minimal x86-64 ELF executable that makes system
// call nr n times (n >= 1) with the path "/x" as its first argument and 0
// as its second (mkdir("/x", 0) for nr 83), ignoring the results, then
// sleeps pause seconds (nanosleep) and calls exit_group(0): a flood of one
// call without a shell or libc, by a process that is still there a moment
// after it.
func LoopProgram(nr, n, pause uint32) []byte {
	text := []byte{0x41, 0xbc} // mov r12d, n
	text = binary.LittleEndian.AppendUint32(text, n)
	text = append(text,
		0x48, 0x8d, 0x3d, 39, 0, 0, 0, // loop: lea rdi, [rip+39] ("/x")
		0x31, 0xf6, // xor esi, esi
		0xb8) // mov eax, nr
	text = binary.LittleEndian.AppendUint32(text, nr)
	text = append(text,
		0x0f, 0x05, // syscall
		0x41, 0xff, 0xcc, // dec r12d
		0x75, 0xeb, // jnz loop (-21)
		0x48, 0x8d, 0x3d, 22, 0, 0, 0, // lea rdi, [rip+22] (the timespec)
		0x31, 0xf6, // xor esi, esi
		0xb8, 35, 0, 0, 0, // mov eax, 35 (nanosleep)
		0x0f, 0x05, // syscall
		0x31, 0xff, // xor edi, edi
		0xb8, 231, 0, 0, 0, // mov eax, 231 (exit_group)
		0x0f, 0x05, // syscall
		'/', 'x', 0, 0) // the path, and a byte to align the timespec
	text = binary.LittleEndian.AppendUint64(text, uint64(pause))
	text = binary.LittleEndian.AppendUint64(text, 0)
	return program(text)
}

// program wraps x86-64 code into an ELF executable of one segment, loaded
// at 0x400000 and entered at the code's first byte.
func program(text []byte) []byte {
	const base = 0x400000
	ehSize := binary.Size(elf.Header64{})
	phSize := binary.Size(elf.Prog64{})
	total := uint64(ehSize + phSize + len(text))
	hdr := elf.Header64{
		Type:      uint16(elf.ET_EXEC),
		Machine:   uint16(elf.EM_X86_64),
		Version:   uint32(elf.EV_CURRENT),
		Entry:     base + uint64(ehSize+phSize),
		Phoff:     uint64(ehSize),
		Ehsize:    uint16(ehSize),
		Phentsize: uint16(phSize),
		Phnum:     1,
	}
	copy(hdr.Ident[:], elf.ELFMAG)
	hdr.Ident[elf.EI_CLASS] = byte(elf.ELFCLASS64)
	hdr.Ident[elf.EI_DATA] = byte(elf.ELFDATA2LSB)
	hdr.Ident[elf.EI_VERSION] = byte(elf.EV_CURRENT)
	prog := elf.Prog64{
		Type:   uint32(elf.PT_LOAD),
		Flags:  uint32(elf.PF_R | elf.PF_X),
		Vaddr:  base,
		Paddr:  base,
		Filesz: total,
		Memsz:  total,
		Align:  0x1000,
	}
	var b bytes.Buffer
	_ = binary.Write(&b, binary.LittleEndian, hdr)
	_ = binary.Write(&b, binary.LittleEndian, prog)
	b.Write(text)
	return b.Bytes()
}
