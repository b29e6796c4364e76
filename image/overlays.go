package image

import (
	"fmt"

	"tandem/image/overlay"
)

// overlayFiles merges part (overlay.RootFS or overlay.Mail) of the
// recipe's overlays, a later overlay winning (docs/image.md, "Overlays").
func (b *builder) overlayFiles(part string) ([]overlay.File, error) {
	if len(b.r.OverlayTrees) != len(b.r.Overlays) {
		return nil, fmt.Errorf("%s: overlays: not read: load the recipe with recipe.Load", b.r.Path)
	}
	return overlay.Merge(b.r.OverlayTrees, part), nil
}

// OverlayRef records an overlay that went into the build (manifest.json
// lists the recipe's overlays in its order, none if it has none).
type OverlayRef struct {
	// Path is the overlay's directory as the recipe names it.
	Path string `json:"path"`
	// Files counts its regular files.
	Files int `json:"files"`
	// SHA256 is overlay.Tree.Digest: of its paths, modes and contents.
	SHA256 string `json:"sha256"`
}

func (b *builder) overlayRefs() []OverlayRef {
	var out []OverlayRef
	for i, t := range b.r.OverlayTrees {
		out = append(out, OverlayRef{Path: b.r.Overlays[i], Files: t.Files(), SHA256: t.Digest()})
	}
	return out
}
