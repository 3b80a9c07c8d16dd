package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strings"
)

// commands are dbalproxy's commands, for completion.
var commands = []string{"serve", "demo", "explain", "policy", "passwd", "completion", "version", "help"}

// cmdFlags are a command's flags, for completion: names, and which of them
// take a value.
type cmdFlags struct {
	names  []string
	valued []string
}

// defaultsLine is a flag in flag.PrintDefaults' output: its name and, for a
// flag that takes a value, the value's type.
var defaultsLine = regexp.MustCompile(`(?m)^  -(\S+)( \S+)?[\t\n]`)

// flagsOf runs a command with -h and reads its flags from the usage it
// prints, so that completion always offers what the command accepts.
func flagsOf(cmd func(args []string, stdout, stderr io.Writer) error, args ...string) cmdFlags {
	var out bytes.Buffer
	_ = cmd(append(args, "-h"), &out, &out)
	var f cmdFlags
	for _, m := range defaultsLine.FindAllStringSubmatch(out.String(), -1) {
		f.names = append(f.names, "--"+m[1])
		if m[2] != "" {
			f.valued = append(f.valued, "--"+m[1])
		}
	}
	return f
}

// completionCmd runs `dbalproxy completion bash|zsh|fish`: it prints a
// completion script for the shell.
func completionCmd(args []string, stdout, stderr io.Writer) error {
	const use = "usage: dbalproxy completion bash|zsh|fish"
	if len(args) == 1 && (args[0] == "-h" || args[0] == "--help" || args[0] == "-help") {
		fmt.Fprintln(stdout, use)
		fmt.Fprintln(stdout, `
Prints a completion script for commands and flags. To load it:

  bash:  source <(dbalproxy completion bash)      (e.g. in ~/.bashrc)
  zsh:   source <(dbalproxy completion zsh)       (e.g. in ~/.zshrc)
  fish:  dbalproxy completion fish | source       (e.g. in ~/.config/fish/config.fish)`)
		return nil
	}
	if len(args) != 1 || !slices.Contains([]string{"bash", "zsh", "fish"}, args[0]) {
		return usageError{errors.New(use)}
	}
	flags := map[string]cmdFlags{
		"serve":   flagsOf(serveCmd),
		"demo":    flagsOf(demoCmd),
		"explain": flagsOf(explainCmd),
		"policy":  flagsOf(policyCmd, "test"),
	}
	switch args[0] {
	case "bash":
		fmt.Fprint(stdout, bashCompletion(flags))
	case "zsh":
		fmt.Fprint(stdout, "#compdef dbalproxy\n# zsh completion for dbalproxy: source <(dbalproxy completion zsh)\n"+
			"autoload -U +X compinit && compinit\nautoload -U +X bashcompinit && bashcompinit\n"+bashCompletion(flags))
	case "fish":
		fmt.Fprint(stdout, fishCompletion(flags))
	}
	return nil
}

func bashCompletion(flags map[string]cmdFlags) string {
	var b strings.Builder
	b.WriteString(`# bash completion for dbalproxy: source <(dbalproxy completion bash)
_dbalproxy() {
    local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD-1]}
    local flags="" valued=""
    COMPREPLY=()
    if [[ $COMP_CWORD -eq 1 ]]; then
        COMPREPLY=($(compgen -W "` + strings.Join(commands, " ") + `" -- "$cur"))
        return
    fi
    case ${COMP_WORDS[1]} in
`)
	for _, c := range []string{"serve", "demo", "explain"} {
		fmt.Fprintf(&b, "    %s)\n        flags=%q\n        valued=%q ;;\n", c, strings.Join(flags[c].names, " "), strings.Join(flags[c].valued, " "))
	}
	fmt.Fprintf(&b, `    policy)
        if [[ $COMP_CWORD -eq 2 ]]; then
            COMPREPLY=($(compgen -W "test" -- "$cur"))
            return
        fi
        flags=%q ;;
    completion)
        [[ $COMP_CWORD -eq 2 ]] && COMPREPLY=($(compgen -W "bash fish zsh" -- "$cur"))
        return ;;
    *)
        return ;;
    esac
    # After a flag that takes a value, bash's default (file name)
    # completion applies.
    [[ " $valued " == *" $prev "* ]] && return
    [[ $cur == -* ]] && COMPREPLY=($(compgen -W "$flags" -- "$cur"))
}
complete -o default -F _dbalproxy dbalproxy
`, strings.Join(flags["policy"].names, " "))
	return b.String()
}

func fishCompletion(flags map[string]cmdFlags) string {
	var b strings.Builder
	b.WriteString("# fish completion for dbalproxy: dbalproxy completion fish | source\n")
	fmt.Fprintf(&b, "complete -c dbalproxy -f -n __fish_use_subcommand -a '%s'\n", strings.Join(commands, " "))
	fmt.Fprintf(&b, "complete -c dbalproxy -f -n '__fish_seen_subcommand_from policy; and not __fish_seen_subcommand_from test' -a test\n")
	fmt.Fprintf(&b, "complete -c dbalproxy -f -n '__fish_seen_subcommand_from completion' -a 'bash zsh fish'\n")
	for _, c := range []string{"serve", "demo", "explain", "policy"} {
		for _, name := range flags[c].names {
			opt := "-f"
			if slices.Contains(flags[c].valued, name) {
				opt = "-r -F"
			}
			fmt.Fprintf(&b, "complete -c dbalproxy -n '__fish_seen_subcommand_from %s' -l %s %s\n", c, strings.TrimPrefix(name, "--"), opt)
		}
	}
	return b.String()
}
