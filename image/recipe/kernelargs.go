package recipe

import (
	"fmt"
	"slices"
	"strings"

	"tandem/internal/yamlstrict"
)

// imageArgs are the tandem.KEY kernel arguments a recipe or profile cannot
// set: those the image writes itself (tandem.slot and tandem.fallback in
// grub.cfg, image/grub/config.go; tandem.boot in the iPXE script,
// image/artifacts.go), and tandem.rescue, a root shell on the console,
// asked for at the boot prompt only (tandem boot -rescue).
var imageArgs = []string{"tandem.boot", "tandem.fallback", "tandem.rescue", "tandem.slot"}

// scriptChars are the characters GRUB (grub.cfg's linux line) and iPXE
// (its kernel line) read as syntax rather than as part of an argument:
// comments, variables, quoting, command separators and redirections.
const scriptChars = "#$'\"\\`;&|<>{}"

// settingPrefix starts the kernel arguments PID 1 reads as settings
// (init/settings).
const settingPrefix = "tandem."

// checkKernelArgs checks the kernel_args of a recipe or profile: each item
// is one argument the boot loaders pass on unchanged.
func checkKernelArgs(args []string) error {
	for i, a := range args {
		if why := kernelArgProblem(a); why != "" {
			return yamlstrict.Errorf(fmt.Sprintf("kernel_args[%d]", i), "%q: %s", a, why)
		}
	}
	return nil
}

// kernelArgProblem says what is wrong with one kernel argument, or "".
func kernelArgProblem(a string) string {
	if a == "" {
		return "empty"
	}
	for _, c := range a {
		switch {
		case c <= ' ' || c >= 0x7f:
			return fmt.Sprintf("%q is not allowed: one argument per item, printable ASCII with no space", c)
		case strings.ContainsRune(scriptChars, c):
			return fmt.Sprintf("%q is not allowed: GRUB and iPXE read it as syntax (none of %s)", c, scriptChars)
		}
	}
	key, _, _ := strings.Cut(a, "=")
	if slices.Contains(imageArgs, key) {
		return fmt.Sprintf("the image sets %s itself (none of %s)", key, strings.Join(imageArgs, ", "))
	}
	if s, ok := strings.CutPrefix(key, settingPrefix); ok && !settingKeyRE.MatchString(s) {
		return fmt.Sprintf("%q is not a setting name (lower-case letters, digits, '_' and '.'); PID 1 would refuse the command line", s)
	}
	return ""
}
