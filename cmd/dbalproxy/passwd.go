package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/dbalproxy/dbalproxy/wire"
	"golang.org/x/term"
)

// passwdCmd runs `dbalproxy passwd LOGIN`: it reads a password from stdin
// (on a terminal without echo, asking twice) and prints a SCRAM-SHA-256
// verifier for it, the value of the login's scram_verifier key, so that the
// password itself need not be kept in the configuration.
func passwdCmd(args []string, in io.Reader, stdout, stderr io.Writer) error {
	const use = "usage: dbalproxy passwd LOGIN   (the password is read from stdin)"
	fs := flag.NewFlagSet("passwd", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), use)
		fmt.Fprintln(fs.Output(), `
Prints a SCRAM-SHA-256 verifier for the password, the value of the login's
scram_verifier key in the configuration file:

  logins:
    - name: LOGIN
      scram_verifier: "SCRAM-SHA-256$4096:..."

On a terminal the password is asked for twice and not echoed; otherwise the
first line of stdin is the password (e.g. dbalproxy passwd alice < pwfile).`)
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 || fs.Arg(0) == "" {
		return usageError{errors.New(use)}
	}
	login := fs.Arg(0)
	var password string
	if f, ok := in.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		read := func(prompt string) (string, error) {
			fmt.Fprint(stderr, prompt)
			b, err := term.ReadPassword(int(f.Fd()))
			fmt.Fprintln(stderr)
			return string(b), err
		}
		p1, err := read(fmt.Sprintf("Password for login %s: ", login))
		if err != nil {
			return err
		}
		p2, err := read("Again: ")
		if err != nil {
			return err
		}
		if p1 != p2 {
			return errors.New("the passwords differ")
		}
		password = p1
	} else {
		b, err := io.ReadAll(io.LimitReader(in, 1<<20))
		if err != nil {
			return fmt.Errorf("reading the password: %w", err)
		}
		b = bytes.TrimSuffix(b, []byte("\n"))
		b = bytes.TrimSuffix(b, []byte("\r"))
		if bytes.ContainsAny(b, "\r\n") {
			return errors.New("the password must be one line")
		}
		password = string(b)
	}
	if password == "" {
		return errors.New("the password is empty")
	}
	sc, err := wire.NewSCRAMCredentials(password)
	if err != nil {
		return fmt.Errorf("cannot derive a SCRAM verifier: %w", err)
	}
	fmt.Fprintln(stdout, wire.FormatSCRAMVerifier(sc))
	return nil
}
