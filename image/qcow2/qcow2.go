// Package qcow2 converts a raw disk image to QEMU's qcow2 (version 3)
// format for KVM and Proxmox: clusters that are all zero are left out, so
// the file holds only what the image uses. The output depends only on the
// input bytes.
package qcow2

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"os"
)

const (
	clusterBits  = 16
	clusterSize  = 1 << clusterBits
	l2Entries    = clusterSize / 8 // one L2 table maps 512 MiB
	refcountBits = 16
	rbEntries    = clusterSize * 8 / refcountBits
	copiedFlag   = uint64(1) << 63
	headerLength = 104
)

// Convert writes the qcow2 form of the raw image src to dst.
func Convert(dst, src string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	st, err := in.Stat()
	if err != nil {
		return err
	}
	size := st.Size()
	if size%512 != 0 {
		return fmt.Errorf("qcow2: %s is %d bytes, not whole 512-byte sectors", src, size)
	}
	nClusters := (size + clusterSize - 1) / clusterSize
	used, err := usedClusters(in, nClusters)
	if err != nil {
		return fmt.Errorf("qcow2: read %s: %w", src, err)
	}
	l1Size := (nClusters + l2Entries - 1) / l2Entries
	l1Clusters := (l1Size*8 + clusterSize - 1) / clusterSize
	// L2 tables only for the 512 MiB regions that hold data.
	l2For := map[int64]bool{}
	for _, c := range used {
		l2For[c/l2Entries] = true
	}
	meta := 1 + l1Clusters + int64(len(l2For)) // header, L1, L2s
	var rtClusters, rbCount int64
	for rtClusters, rbCount = 1, 1; ; {
		total := meta + rtClusters + rbCount + int64(len(used))
		needRB := (total + rbEntries - 1) / rbEntries
		needRT := (needRB*8 + clusterSize - 1) / clusterSize
		if needRB == rbCount && needRT == rtClusters {
			break
		}
		rbCount, rtClusters = needRB, needRT
	}
	// Layout: header | refcount table | refcount blocks | L1 | L2s | data.
	rtOff := int64(clusterSize)
	rbOff := rtOff + rtClusters*clusterSize
	l1Off := rbOff + rbCount*clusterSize
	l2Off := l1Off + l1Clusters*clusterSize
	dataOff := l2Off + int64(len(l2For))*clusterSize
	totalClusters := dataOff/clusterSize + int64(len(used))

	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	defer out.Close()
	w := bufio.NewWriterSize(out, 1<<20)
	hdr := header(size, l1Size, l1Off, rtOff, rtClusters)
	w.Write(pad(hdr))
	rt := make([]byte, rtClusters*clusterSize)
	for i := int64(0); i < rbCount; i++ {
		binary.BigEndian.PutUint64(rt[i*8:], uint64(rbOff+i*clusterSize))
	}
	w.Write(rt)
	rb := make([]byte, rbCount*clusterSize)
	for c := int64(0); c < totalClusters; c++ {
		binary.BigEndian.PutUint16(rb[c*2:], 1)
	}
	w.Write(rb)
	// L1 and L2 tables, L2s in region order.
	l1 := make([]byte, l1Clusters*clusterSize)
	l2 := make([]byte, int64(len(l2For))*clusterSize)
	l2Index := map[int64]int64{}
	for r, n := int64(0), int64(0); r < l1Size; r++ {
		if l2For[r] {
			l2Index[r] = n
			binary.BigEndian.PutUint64(l1[r*8:], uint64(l2Off+n*clusterSize)|copiedFlag)
			n++
		}
	}
	for i, c := range used {
		e := l2Index[c/l2Entries]*l2Entries + c%l2Entries
		binary.BigEndian.PutUint64(l2[e*8:], uint64(dataOff+int64(i)*clusterSize)|copiedFlag)
	}
	w.Write(l1)
	w.Write(l2)
	buf := make([]byte, clusterSize)
	for _, c := range used {
		clear(buf)
		if _, err := in.ReadAt(buf, c*clusterSize); err != nil && err != io.EOF {
			return err
		}
		w.Write(buf)
	}
	if err := w.Flush(); err != nil {
		return fmt.Errorf("qcow2: write %s: %w", dst, err)
	}
	return out.Close()
}

func usedClusters(r io.ReaderAt, n int64) ([]int64, error) {
	var used []int64
	buf := make([]byte, clusterSize)
	zero := make([]byte, clusterSize)
	for c := int64(0); c < n; c++ {
		clear(buf)
		k, err := r.ReadAt(buf, c*clusterSize)
		if err != nil && err != io.EOF {
			return nil, err
		}
		if k > 0 && !bytes.Equal(buf, zero) {
			used = append(used, c)
		}
	}
	return used, nil
}

func header(size, l1Size, l1Off, rtOff, rtClusters int64) []byte {
	var b bytes.Buffer
	put := func(v any) { _ = binary.Write(&b, binary.BigEndian, v) } // fixed-size values into a buffer: cannot fail
	b.WriteString("QFI\xfb")
	put(uint32(3))            // version
	put(uint64(0))            // backing file offset
	put(uint32(0))            // backing file size
	put(uint32(clusterBits))  // cluster bits
	put(uint64(size))         // virtual size
	put(uint32(0))            // no encryption
	put(uint32(l1Size))       // L1 entries
	put(uint64(l1Off))        // L1 offset
	put(uint64(rtOff))        // refcount table offset
	put(uint32(rtClusters))   // refcount table clusters
	put(uint32(0))            // snapshots
	put(uint64(0))            // snapshots offset
	put(uint64(0))            // incompatible features
	put(uint64(0))            // compatible features
	put(uint64(0))            // autoclear features
	put(uint32(4))            // refcount order: 16-bit refcounts
	put(uint32(headerLength)) // header length
	put(uint64(0))            // end of header extensions
	return b.Bytes()
}

func pad(b []byte) []byte {
	return append(b, make([]byte, clusterSize-len(b))...)
}
