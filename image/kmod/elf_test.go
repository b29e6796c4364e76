package kmod

import (
	"bytes"
	"encoding/binary"
)

// elfWithModinfo builds a 64-bit little-endian ELF file with two sections:
// the null section and .modinfo, with a section name table.
func elfWithModinfo(modinfo string) []byte {
	shstr := "\x00.modinfo\x00.shstrtab\x00"
	var b bytes.Buffer
	hdrSize, shSize := 64, 64
	dataOff := hdrSize
	strOff := dataOff + len(modinfo)
	shOff := strOff + len(shstr)
	w := func(v any) { _ = binary.Write(&b, binary.LittleEndian, v) }
	b.Write([]byte{0x7f, 'E', 'L', 'F', 2, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0})
	w(uint16(1))  // ET_REL
	w(uint16(62)) // x86-64
	w(uint32(1))  // version
	w(uint64(0))  // entry
	w(uint64(0))  // phoff
	w(uint64(shOff))
	w(uint32(0)) // flags
	w(uint16(hdrSize))
	w(uint16(0)) // phentsize
	w(uint16(0)) // phnum
	w(uint16(shSize))
	w(uint16(3)) // shnum
	w(uint16(2)) // shstrndx
	b.WriteString(modinfo)
	b.WriteString(shstr)
	section := func(name, typ uint32, off, size int) {
		w(name)
		w(typ)
		w(uint64(0))
		w(uint64(0))
		w(uint64(off))
		w(uint64(size))
		w(uint32(0))
		w(uint32(0))
		w(uint64(1))
		w(uint64(0))
	}
	section(0, 0, 0, 0)
	section(1, 1, dataOff, len(modinfo)) // PROGBITS .modinfo
	section(10, 3, strOff, len(shstr))   // STRTAB .shstrtab
	return b.Bytes()
}
