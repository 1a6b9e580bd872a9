package ocitest

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
)

// ExitProgram returns a minimal x86-64 ELF executable that calls
// exit_group(code) and nothing else.
func ExitProgram(code byte) []byte {
	const base = 0x400000
	text := []byte{
		0xbf, code, 0, 0, 0, // mov edi, code
		0xb8, 231, 0, 0, 0, // mov eax, 231 (exit_group)
		0x0f, 0x05, // syscall
	}
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
