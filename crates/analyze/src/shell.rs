//! Shell commands: an `argv` array (one program and its arguments, as `execve` gets them) or a
//! `command` line, split as a POSIX shell would (quotes, escapes, comments, `|`, `;`, `&&`,
//! redirections, `$(...)` and backticks). A command whose program is `kubectl` goes to the
//! Kubernetes analyzer. A `-c` script of `sh`/`bash` is analyzed as a command line.

use countersign_core::Risk;
use serde_json::{Map, Value};

use crate::{names, Findings};

/// Deepest nesting of `sh -c`, `$(...)` and `sudo` followed.
const MAX_NESTING: usize = 4;

/// Most simple commands named in the impact line.
const NAMED_COMMANDS: usize = 6;

/// One simple command: its words and its redirections (`>`, `>>`, `<`... and their target).
#[derive(Debug, Default, Clone)]
pub(crate) struct Simple {
    pub(crate) words: Vec<String>,
    pub(crate) redirects: Vec<(String, String)>,
}

/// A command line, split.
#[derive(Debug, Default)]
pub(crate) struct Parsed {
    /// Pipelines (separated by `;`, `&&`, `||`, `&`, newlines), each of simple commands
    /// joined by `|`.
    pub(crate) pipelines: Vec<Vec<Simple>>,
    /// The text of every `$(...)`, `` `...` ``, `<(...)` and `>(...)`.
    pub(crate) substitutions: Vec<String>,
    /// An unterminated quote or substitution.
    pub(crate) broken: bool,
}

/// Splits a command line like a POSIX shell (the parts that matter to the analysis: it does not
/// expand variables or globs).
pub(crate) fn split(line: &str) -> Parsed {
    let chars: Vec<char> = line.chars().collect();
    let mut out = Parsed::default();
    let mut pipeline: Vec<Simple> = Vec::new();
    let mut simple = Simple::default();
    let mut word = String::new();
    let mut in_word = false;
    let mut pending_redirect: Option<String> = None;
    let mut i = 0;

    // Ends the current word: a redirect target or the command's next word.
    fn end_word(
        word: &mut String,
        in_word: &mut bool,
        simple: &mut Simple,
        pending: &mut Option<String>,
    ) {
        if !*in_word {
            return;
        }
        let w = std::mem::take(word);
        *in_word = false;
        match pending.take() {
            Some(op) => simple.redirects.push((op, w)),
            None => simple.words.push(w),
        }
    }
    fn end_simple(simple: &mut Simple, pipeline: &mut Vec<Simple>) {
        let s = std::mem::take(simple);
        if !s.words.is_empty() || !s.redirects.is_empty() {
            pipeline.push(s);
        }
    }
    fn end_pipeline(pipeline: &mut Vec<Simple>, out: &mut Parsed) {
        let p = std::mem::take(pipeline);
        if !p.is_empty() {
            out.pipelines.push(p);
        }
    }
    // The text of a `$(`/`<(`/`>(` substitution starting at `start` (just after the `(`), and
    // the index after its `)`.
    fn paren_body(chars: &[char], start: usize) -> Option<(String, usize)> {
        let mut depth = 1usize;
        let mut j = start;
        let mut quote: Option<char> = None;
        while let Some(&c) = chars.get(j) {
            match (quote, c) {
                (Some('\''), '\'') => quote = None,
                (Some('\''), _) => {}
                (Some('"'), '"') => quote = None,
                (_, '\\') => j += 1,
                (None, '\'' | '"') => quote = Some(c),
                (None, '(') => depth += 1,
                (None, ')') => {
                    depth -= 1;
                    if depth == 0 {
                        return Some((chars[start..j].iter().collect(), j + 1));
                    }
                }
                _ => {}
            }
            j += 1;
        }
        None
    }
    fn backtick_body(chars: &[char], start: usize) -> Option<(String, usize)> {
        let mut j = start;
        let mut body = String::new();
        while let Some(&c) = chars.get(j) {
            match c {
                '\\' => {
                    if let Some(&n) = chars.get(j + 1) {
                        body.push(n);
                    }
                    j += 2;
                    continue;
                }
                '`' => return Some((body, j + 1)),
                _ => body.push(c),
            }
            j += 1;
        }
        None
    }

    while let Some(&c) = chars.get(i) {
        match c {
            ' ' | '\t' => {
                end_word(&mut word, &mut in_word, &mut simple, &mut pending_redirect);
                i += 1;
            }
            '\n' | ';' | '&' | '|' => {
                end_word(&mut word, &mut in_word, &mut simple, &mut pending_redirect);
                let next = chars.get(i + 1).copied();
                if c == '&' && next == Some('>') {
                    // `&>` / `&>>`: stdout and stderr to a file.
                    let append = chars.get(i + 2) == Some(&'>');
                    pending_redirect = Some(if append { "&>>" } else { "&>" }.into());
                    i += if append { 3 } else { 2 };
                    continue;
                }
                end_simple(&mut simple, &mut pipeline);
                let pipe = c == '|' && next != Some('|');
                if !pipe {
                    end_pipeline(&mut pipeline, &mut out);
                }
                i += if matches!((c, next), ('|', Some('|' | '&')) | ('&', Some('&'))) {
                    2
                } else {
                    1
                };
            }
            '>' | '<' => {
                if chars.get(i + 1) == Some(&'(') {
                    // Process substitution.
                    match paren_body(&chars, i + 2) {
                        Some((body, next)) => {
                            out.substitutions.push(body);
                            word.push_str("/dev/fd/63");
                            in_word = true;
                            i = next;
                        }
                        None => {
                            out.broken = true;
                            break;
                        }
                    }
                    continue;
                }
                // A word of digits just before is the file descriptor.
                let fd_word =
                    in_word && !word.is_empty() && word.chars().all(|d| d.is_ascii_digit());
                if fd_word {
                    word.clear();
                    in_word = false;
                } else {
                    end_word(&mut word, &mut in_word, &mut simple, &mut pending_redirect);
                }
                let mut op = c.to_string();
                i += 1;
                while let Some(&n) = chars.get(i) {
                    if (n == '>' || n == '&' || n == '|' || n == '<') && op.len() < 3 {
                        op.push(n);
                        i += 1;
                    } else {
                        break;
                    }
                }
                pending_redirect = Some(op);
            }
            '#' if !in_word => {
                while chars.get(i).is_some_and(|&n| n != '\n') {
                    i += 1;
                }
            }
            '\\' => {
                if let Some(&n) = chars.get(i + 1) {
                    if n != '\n' {
                        word.push(n);
                        in_word = true;
                    }
                }
                i += 2;
            }
            '\'' => {
                in_word = true;
                i += 1;
                loop {
                    match chars.get(i) {
                        Some('\'') => {
                            i += 1;
                            break;
                        }
                        Some(&n) => {
                            word.push(n);
                            i += 1;
                        }
                        None => {
                            out.broken = true;
                            break;
                        }
                    }
                }
            }
            '"' => {
                in_word = true;
                i += 1;
                loop {
                    match chars.get(i) {
                        Some('"') => {
                            i += 1;
                            break;
                        }
                        Some('\\') => {
                            match chars.get(i + 1) {
                                Some(&n) if matches!(n, '$' | '`' | '"' | '\\') => word.push(n),
                                Some('\n') => {}
                                Some(&n) => {
                                    word.push('\\');
                                    word.push(n);
                                }
                                None => {}
                            }
                            i += 2;
                        }
                        Some('$') if chars.get(i + 1) == Some(&'(') => {
                            match paren_body(&chars, i + 2) {
                                Some((body, next)) => {
                                    out.substitutions.push(body);
                                    word.push_str("$(…)");
                                    i = next;
                                }
                                None => {
                                    out.broken = true;
                                    break;
                                }
                            }
                        }
                        Some('`') => match backtick_body(&chars, i + 1) {
                            Some((body, next)) => {
                                out.substitutions.push(body);
                                word.push_str("$(…)");
                                i = next;
                            }
                            None => {
                                out.broken = true;
                                break;
                            }
                        },
                        Some(&n) => {
                            word.push(n);
                            i += 1;
                        }
                        None => {
                            out.broken = true;
                            break;
                        }
                    }
                }
                if out.broken {
                    break;
                }
            }
            '$' if chars.get(i + 1) == Some(&'(') => match paren_body(&chars, i + 2) {
                Some((body, next)) => {
                    out.substitutions.push(body);
                    word.push_str("$(…)");
                    in_word = true;
                    i = next;
                }
                None => {
                    out.broken = true;
                    break;
                }
            },
            '`' => match backtick_body(&chars, i + 1) {
                Some((body, next)) => {
                    out.substitutions.push(body);
                    word.push_str("$(…)");
                    in_word = true;
                    i = next;
                }
                None => {
                    out.broken = true;
                    break;
                }
            },
            '(' | ')' | '{' | '}' if !in_word => {
                // Subshells and groups: their commands are analyzed like any other.
                end_simple(&mut simple, &mut pipeline);
                i += 1;
            }
            _ => {
                word.push(c);
                in_word = true;
                i += 1;
            }
        }
    }
    end_word(&mut word, &mut in_word, &mut simple, &mut pending_redirect);
    if pending_redirect.is_some() {
        out.broken = true;
    }
    end_simple(&mut simple, &mut pipeline);
    end_pipeline(&mut pipeline, &mut out);
    out
}

/// The `argv` or `command` parameter.
pub(crate) fn run_command(value: &Value, _params: &Map<String, Value>, f: &mut Findings) {
    match value {
        Value::Array(items) => {
            let words: Vec<String> = items
                .iter()
                .map(|v| match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .collect();
            if words.is_empty() {
                return;
            }
            let mut named = Vec::new();
            argv(&words, f, 0, &mut named);
            say_commands(&named, f);
        }
        Value::String(line) => {
            let mut named = Vec::new();
            command_line(line, f, 0, &mut named);
            say_commands(&named, f);
        }
        _ => f.flag(
            Risk::High,
            "shell:unparsed",
            "the command is neither an argv array nor a command line; treated as high risk",
        ),
    }
}

fn say_commands(named: &[String], f: &mut Findings) {
    if !named.is_empty() {
        f.say(format!("runs {}", names(named)));
    }
}

/// A command line, split and analyzed: every simple command, every pipeline, every
/// substitution (which is itself a command line).
fn command_line(line: &str, f: &mut Findings, depth: usize, named: &mut Vec<String>) {
    if depth > MAX_NESTING {
        f.flag(
            Risk::High,
            "shell:unparsed",
            "commands nested too deeply to analyze; treated as high risk",
        );
        return;
    }
    let parsed = split(line);
    if parsed.broken {
        f.flag(
            Risk::High,
            "shell:unparsed",
            "the command line has an unterminated quote or substitution; treated as high risk",
        );
    }
    if !parsed.substitutions.is_empty() {
        f.flag(
            Risk::Medium,
            "shell:substitution",
            "runs commands inside $(...) or backticks",
        );
    }
    for sub in &parsed.substitutions {
        let mut inner = Vec::new();
        command_line(sub, f, depth + 1, &mut inner);
        if inner.iter().any(|c| DOWNLOADERS.contains(&c.as_str())) {
            // `sh -c "$(curl ...)"`, `bash <(wget ...)`: fetched code is run by what consumes it.
            let consumers = parsed
                .pipelines
                .iter()
                .flatten()
                .filter_map(|s| program(&s.words))
                .any(|p| SHELLS.contains(&p.as_str()));
            if consumers {
                f.flag(
                    Risk::Critical,
                    "shell:pipe-to-shell",
                    "runs code downloaded from the network",
                );
            }
        }
        named.extend(inner);
    }
    for pipeline in &parsed.pipelines {
        let programs: Vec<Option<String>> = pipeline.iter().map(|s| program(&s.words)).collect();
        for (i, simple) in pipeline.iter().enumerate() {
            redirects(&simple.redirects, f);
            if !simple.words.is_empty() {
                argv(&simple.words, f, depth, named);
            }
            let Some(Some(p)) = programs.get(i) else {
                continue;
            };
            if i == 0 {
                continue;
            }
            let upstream = || programs[..i].iter().flatten();
            if SHELLS.contains(&p.as_str()) && upstream().any(|u| DOWNLOADERS.contains(&u.as_str()))
            {
                f.flag(
                    Risk::Critical,
                    "shell:pipe-to-shell",
                    format!("pipes a download into {p}"),
                );
            } else if SHELLS.contains(&p.as_str()) {
                f.flag(
                    Risk::High,
                    "shell:pipe-to-shell",
                    format!("pipes text into {p} to run it"),
                );
            }
            if NETWORK.contains(&p.as_str()) {
                f.flag(
                    Risk::High,
                    "shell:network-pipe",
                    format!("pipes output to the network through {p}"),
                );
            }
        }
    }
}

/// Programs that fetch from the network.
const DOWNLOADERS: &[&str] = &["curl", "wget", "fetch", "aria2c", "http", "https", "xh"];
/// Programs that run what they are given.
const SHELLS: &[&str] = &[
    "sh",
    "bash",
    "zsh",
    "dash",
    "ksh",
    "fish",
    "ash",
    "csh",
    "tcsh",
    "python",
    "python3",
    "python2",
    "perl",
    "ruby",
    "node",
    "php",
    "pwsh",
    "powershell",
    "iex",
    "source",
    ".",
];
/// Programs that send what they read over the network.
const NETWORK: &[&str] = &[
    "nc", "ncat", "netcat", "socat", "telnet", "openssl", "ssh", "scp", "curl", "wget", "ftp",
    "sftp", "rsync",
];
/// Prefixes that run the rest of the words as a command.
const WRAPPERS: &[&str] = &[
    "sudo", "doas", "su", "env", "nohup", "nice", "ionice", "time", "timeout", "xargs", "exec",
    "command", "builtin", "stdbuf", "setsid", "chroot", "runuser", "watch", "strace",
];

/// A word's program name: its last path component.
fn base(word: &str) -> &str {
    word.rsplit('/').next().unwrap_or(word)
}

/// The program a simple command runs: past `VAR=value` assignments and wrappers.
fn program(words: &[String]) -> Option<String> {
    let mut rest = words;
    loop {
        let first = rest.first()?;
        if is_assignment(first) {
            rest = &rest[1..];
            continue;
        }
        let b = base(first);
        if WRAPPERS.contains(&b) {
            rest = skip_wrapper_options(b, &rest[1..]);
            continue;
        }
        return Some(b.to_string());
    }
}

fn is_assignment(word: &str) -> bool {
    word.split_once('=').is_some_and(|(k, _)| {
        !k.is_empty()
            && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && !k.starts_with(|c: char| c.is_ascii_digit())
    })
}

/// The words after a wrapper's own options (`sudo -u root`, `timeout 10`, `env A=b`).
fn skip_wrapper_options<'a>(wrapper: &str, mut rest: &'a [String]) -> &'a [String] {
    let takes_value: &[&str] = match wrapper {
        "sudo" => &["-u", "-g", "-C", "-D", "-h", "-p", "-r", "-t", "-U", "-T"],
        "doas" => &["-u", "-C"],
        "su" => &["-c", "-s", "-g", "-G"],
        "nice" => &["-n"],
        "ionice" => &["-c", "-n", "-p"],
        "xargs" => &["-I", "-n", "-P", "-L", "-d", "-E", "-s", "-a"],
        "timeout" => &["-s", "-k", "--signal", "--kill-after"],
        "runuser" => &["-u", "-g", "-G"],
        "watch" => &["-n", "-d"],
        "strace" => &["-o", "-e", "-p", "-s"],
        _ => &[],
    };
    while let Some(w) = rest.first() {
        if w == "--" {
            return &rest[1..];
        }
        if wrapper == "env" && is_assignment(w) {
            rest = &rest[1..];
            continue;
        }
        if w.starts_with('-') {
            rest = if takes_value.contains(&w.as_str()) && rest.len() > 1 {
                &rest[2..]
            } else {
                &rest[1..]
            };
            continue;
        }
        if wrapper == "timeout" && w.chars().next().is_some_and(|c| c.is_ascii_digit()) {
            rest = &rest[1..];
            continue;
        }
        if wrapper == "chroot" {
            // The new root, then the command.
            return &rest[1..];
        }
        break;
    }
    rest
}

/// One program and its arguments (an `argv`, or a simple command of a line).
fn argv(words: &[String], f: &mut Findings, depth: usize, named: &mut Vec<String>) {
    if depth > MAX_NESTING {
        f.flag(
            Risk::High,
            "shell:unparsed",
            "commands nested too deeply to analyze; treated as high risk",
        );
        return;
    }
    let mut rest = words;
    while let Some(first) = rest.first() {
        if is_assignment(first) {
            rest = &rest[1..];
            continue;
        }
        let b = base(first);
        if !WRAPPERS.contains(&b) {
            break;
        }
        match b {
            "sudo" | "doas" | "su" | "runuser" => f.flag(
                Risk::High,
                "shell:sudo",
                format!("runs as another user ({b})"),
            ),
            "chroot" => f.tag(Risk::High, "shell:sudo"),
            _ => {}
        }
        if b == "su" {
            // `su -c 'cmd'`: the command is a line.
            if let Some(pos) = rest.iter().position(|w| w == "-c") {
                if let Some(line) = rest.get(pos + 1) {
                    command_line(line, f, depth + 1, named);
                }
                return;
            }
        }
        rest = skip_wrapper_options(b, &rest[1..]);
    }
    let Some(first) = rest.first() else {
        return;
    };
    let prog = base(first);
    if named.len() < NAMED_COMMANDS && !named.iter().any(|n| n == prog) {
        named.push(prog.to_string());
    }
    let args = &rest[1..];
    match prog {
        "kubectl" | "oc" => crate::k8s::kubectl(args, f),
        "rm" => rm(args, f),
        "chmod" => chmod(args, f),
        "chown" => {
            if args
                .iter()
                .any(|a| a.starts_with('-') && !a.starts_with("--") && a.contains('R'))
                && args.iter().any(|a| broad_path(a))
            {
                f.flag(
                    Risk::High,
                    "shell:chown-recursive",
                    "changes the owner of a whole system tree",
                );
            }
            etc_targets(args, f);
        }
        "dd" => {
            for a in args {
                if let Some(dest) = a.strip_prefix("of=") {
                    if dest.starts_with("/dev/") && !is_harmless_device(dest) {
                        f.flag(
                            Risk::Critical,
                            "shell:dd-device",
                            format!("writes raw data to the device {dest}"),
                        );
                    } else if dest.starts_with("/etc/") {
                        f.flag(Risk::High, "shell:write-etc", format!("writes {dest}"));
                    }
                }
            }
        }
        p if p.starts_with("mkfs")
            || p == "wipefs"
            || p == "shred"
            || p == "fdisk"
            || p == "parted" =>
        {
            f.flag(
                Risk::Critical,
                "shell:disk",
                format!("{p} formats, wipes or repartitions disks"),
            );
        }
        "shutdown" | "reboot" | "halt" | "poweroff" | "init" => f.flag(
            Risk::High,
            "shell:shutdown",
            format!("{prog} stops or restarts the machine"),
        ),
        "tee" | "cp" | "mv" | "install" | "ln" | "rsync" | "truncate" | "touch" => {
            etc_targets(args, f);
        }
        "sed" | "perl" if args.iter().any(|a| a == "-i" || a.starts_with("-i")) => {
            etc_targets(args, f);
        }
        "eval" => {
            f.tag(Risk::Medium, "shell:eval");
            command_line(&args.join(" "), f, depth + 1, named);
        }
        "nc" | "ncat" | "netcat" | "socat" | "telnet" => {
            f.flag(
                Risk::High,
                "shell:network",
                format!("opens a raw network connection ({prog})"),
            );
        }
        "curl" | "wget" => upload(prog, args, f),
        "crontab" | "systemctl" | "useradd" | "usermod" | "passwd" | "visudo" | "iptables"
        | "ufw" => {
            f.flag(
                Risk::High,
                "shell:system",
                format!("changes system configuration ({prog})"),
            );
        }
        _ => {}
    }
    if SHELLS.contains(&prog) {
        // `bash -c 'script'`: the script is a command line.
        if let Some(pos) = args
            .iter()
            .position(|a| a.starts_with('-') && !a.starts_with("--") && a.contains('c'))
        {
            if let Some(line) = args.get(pos + 1) {
                command_line(line, f, depth + 1, named);
            }
        }
    }
}

fn is_harmless_device(dest: &str) -> bool {
    matches!(
        dest,
        "/dev/null" | "/dev/stdout" | "/dev/stderr" | "/dev/zero"
    ) || dest.starts_with("/dev/fd/")
}

/// A path whose recursive removal destroys a system or a home: `/`, `/*`, `~`, `.`, `*`, a
/// top-level directory, a variable that may be empty.
fn broad_path(p: &str) -> bool {
    let p = p.trim_end_matches('/');
    if p.is_empty() || matches!(p, "/*" | "~" | "~/*" | "." | ".." | "*" | "./*" | "../*") {
        return true;
    }
    if p.starts_with('$') {
        // `$HOME`, `$DIR/` (empty DIR means `/`).
        return true;
    }
    if let Some(rest) = p.strip_prefix('/') {
        // `/etc`, `/var`, `/home/*`: one component, or a glob under one.
        let parts: Vec<&str> = rest.split('/').collect();
        return parts.len() == 1 || (parts.len() == 2 && parts[1] == "*");
    }
    false
}

fn rm(args: &[String], f: &mut Findings) {
    let mut recursive = false;
    let mut paths = Vec::new();
    let mut no_more_options = false;
    for a in args {
        if !no_more_options && a == "--" {
            no_more_options = true;
        } else if !no_more_options && a.starts_with("--") {
            recursive |= a == "--recursive";
            if a == "--no-preserve-root" {
                f.flag(
                    Risk::Critical,
                    "shell:rm-root",
                    "removes files with --no-preserve-root",
                );
            }
        } else if !no_more_options && a.starts_with('-') && a.len() > 1 {
            recursive |= a.contains('r') || a.contains('R');
        } else {
            paths.push(a.as_str());
        }
    }
    if !recursive {
        return;
    }
    let broad: Vec<&str> = paths.iter().copied().filter(|p| broad_path(p)).collect();
    if broad.is_empty() {
        f.flag(
            Risk::High,
            "shell:rm-recursive",
            format!("removes recursively: {}", names(&paths)),
        );
    } else {
        f.flag(
            Risk::Critical,
            "shell:rm-recursive",
            format!("removes recursively a broad path: {}", names(&broad)),
        );
    }
}

fn chmod(args: &[String], f: &mut Findings) {
    let open = args.iter().any(|a| {
        let m = a.trim_start_matches('0');
        m == "777" || m == "666" || a.contains("a+rwx") || a.contains("o+w") || a == "+rwx"
    });
    if open {
        f.flag(
            Risk::High,
            "shell:chmod-777",
            "makes files writable by everyone",
        );
    }
    if args
        .iter()
        .any(|a| a.contains("+s") || (a.starts_with('4') && a.len() == 4))
    {
        f.flag(Risk::High, "shell:setuid", "sets the setuid bit");
    }
    etc_targets(args, f);
}

fn etc_targets(args: &[String], f: &mut Findings) {
    for a in args {
        if a.starts_with("/etc/") || a == "/etc" {
            f.flag(Risk::High, "shell:write-etc", format!("writes {a}"));
        }
    }
}

fn redirects(redirects: &[(String, String)], f: &mut Findings) {
    for (op, target) in redirects {
        if op.starts_with('<') && !op.contains('>') {
            if target.starts_with("/dev/tcp/") || target.starts_with("/dev/udp/") {
                f.flag(
                    Risk::High,
                    "shell:network-pipe",
                    format!("reads from the network ({target})"),
                );
            }
            continue;
        }
        if target.starts_with("/etc/") || target == "/etc" {
            f.flag(Risk::High, "shell:write-etc", format!("writes {target}"));
        } else if target.starts_with("/dev/tcp/") || target.starts_with("/dev/udp/") {
            f.flag(
                Risk::High,
                "shell:network-pipe",
                format!("sends output to the network ({target})"),
            );
        } else if target.starts_with("/dev/")
            && !is_harmless_device(target)
            && !target.starts_with("&")
        {
            f.flag(
                Risk::Critical,
                "shell:dd-device",
                format!("writes to the device {target}"),
            );
        }
    }
}

/// `curl -d @file`, `curl -T file`, `wget --post-file`: data leaves the machine.
fn upload(prog: &str, args: &[String], f: &mut Findings) {
    let uploads = args.iter().enumerate().any(|(i, a)| {
        let next_is_file = || args.get(i + 1).is_some_and(|n| n.starts_with('@'));
        matches!(
            a.as_str(),
            "-T" | "--upload-file" | "--post-file" | "--body-file"
        ) || (matches!(
            a.as_str(),
            "-d" | "--data" | "--data-binary" | "--data-raw" | "--data-urlencode" | "-F" | "--form"
        ) && next_is_file())
            || a.starts_with("--data-binary=@")
            || a.starts_with("--post-file=")
            || (a.starts_with("-d@") || a.starts_with("-F") && a.contains('@'))
    });
    if uploads {
        f.flag(
            Risk::High,
            "shell:upload",
            format!("uploads a file to the network ({prog})"),
        );
    }
}
