package main

import (
	"context"
	"errors"
	"io"
)

func runBoot(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return errors.New("boot: not yet")
}

func runBench(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return errors.New("bench: not yet")
}
