//! The built-in signatures.
//!
//! Written for this project from what the attacks look like (the syntax an
//! injected payload needs to do harm), not copied from another rule set.
//! Each pattern is matched case-insensitively on the value after its
//! pipeline of transformations; regexes are byte-oriented and never
//! backtrack. Ids: 10xxx protocol, 11xxx scanners, 20xxx traversal / LFI,
//! 21xxx RFI / SSRF, 22xxx command injection, 23xxx PHP, 24xxx Java,
//! 25xxx templates and code injection, 26xxx NoSQL, 27xxx XXE, 30xxx XSS,
//! 40xxx SQL injection. Ids from 100000 up are free for custom rules.

use crate::rules::{Condition, Family, Pattern, RuleSpec, Severity, Targets};
use crate::transform::Transform::{self, *};

/// Decoded text: URL (repeated), HTML entities, `\u` escapes, no NULs, one space per run.
const TEXT: &[Transform] = &[
    UrlDecode,
    HtmlEntityDecode,
    UnicodeUnescape,
    RemoveNulls,
    CompressWhitespace,
];
/// [`TEXT`] with SQL comments turned into spaces.
const SQL: &[Transform] = &[
    UrlDecode,
    HtmlEntityDecode,
    UnicodeUnescape,
    RemoveNulls,
    RemoveComments,
    CompressWhitespace,
];
/// Decoded, line breaks kept (they are the evidence of header injection).
const LINES: &[Transform] = &[UrlDecode, HtmlEntityDecode, UnicodeUnescape, RemoveNulls];
/// Decoded, not normalized (the `../` are the evidence).
const PATH: &[Transform] = &[UrlDecode, UnicodeUnescape, RemoveNulls];
/// Decoded and path-normalized.
const NORMALIZED_PATH: &[Transform] = &[UrlDecode, UnicodeUnescape, RemoveNulls, NormalizePath];
/// What a shell would execute.
const SHELL: &[Transform] = &[
    UrlDecode,
    HtmlEntityDecode,
    UnicodeUnescape,
    RemoveNulls,
    CmdLine,
];
/// As sent (encodings are the evidence).
const RAW: &[Transform] = &[];

/// Where injection payloads arrive.
const INPUT: Targets = Targets::INPUT;
/// Injection places plus the path.
const INPUT_PATH: Targets = Targets::INPUT.or(Targets::PATH);
/// Injection places plus every other header.
const INPUT_HEADERS: Targets = Targets::INPUT.or(Targets::OTHER_HEADERS);
/// Names that never hold a line break: argument and cookie names, cookie values.
const NAMES_AND_COOKIES: Targets = Targets::ARG_NAMES
    .or(Targets::COOKIE_NAMES)
    .or(Targets::COOKIES);
/// Where an uploaded file's name arrives.
const UPLOADS: Targets = Targets::FILES
    .or(Targets::OTHER_HEADERS)
    .or(Targets::HEADERS);
/// Where a query operator can be smuggled in as a name or a value.
const OPERATORS: Targets = Targets::ARG_NAMES
    .or(Targets::COOKIE_NAMES)
    .or(Targets::ARGS);
/// Where script reaches a page: arguments, cookies, headers, the path; not a
/// raw body as a whole (an XML document is full of tags; its text and
/// attributes are inspected as arguments).
const XSS_TARGETS: Targets = Targets((Targets::INPUT.0 | Targets::PATH.0) & !Targets::BODY.0);
const XSS_TARGETS_ALL: Targets = Targets(Targets::ALL.0 & !Targets::BODY.0);
/// Every place, any header included.
const ALL: Targets = Targets::ALL;

struct Def {
    id: u32,
    family: Family,
    paranoia: u8,
    severity: Severity,
    targets: Targets,
    transforms: &'static [Transform],
    regex: &'static str,
    phrases: &'static [&'static str],
    word: bool,
    condition: Condition,
    description: &'static str,
}

const fn rx(
    id: u32,
    family: Family,
    paranoia: u8,
    targets: Targets,
    transforms: &'static [Transform],
    regex: &'static str,
    description: &'static str,
) -> Def {
    Def {
        id,
        family,
        paranoia,
        severity: Severity::Critical,
        targets,
        transforms,
        regex,
        phrases: &[],
        word: false,
        condition: Condition::Always,
        description,
    }
}

#[allow(clippy::too_many_arguments)]
const fn words(
    id: u32,
    family: Family,
    paranoia: u8,
    targets: Targets,
    transforms: &'static [Transform],
    phrases: &'static [&'static str],
    word: bool,
    description: &'static str,
) -> Def {
    let mut d = rx(id, family, paranoia, targets, transforms, "", description);
    d.phrases = phrases;
    d.word = word;
    d
}

const fn sev(mut d: Def, severity: Severity) -> Def {
    d.severity = severity;
    d
}

const fn when(mut d: Def, condition: Condition) -> Def {
    d.condition = condition;
    d
}

fn defs() -> Vec<Def> {
    use Family::*;
    let mut d = vec![
        // ---- protocol ----------------------------------------------------
        // A line break is CR, LF, or the UTF-8 of U+560A / U+560D, which
        // servers that keep the low byte of each character turn into one.
        rx(
            10010,
            Protocol,
            1,
            INPUT_PATH.or(Targets::OTHER_HEADERS),
            LINES,
            r"(?:[\r\n]|\xe5\x98[\x8a\x8d])[ \t]*(?:set-cookie2?|content-(?:type|length|disposition|security-policy|encoding|location|language)|transfer-encoding|x-xss-protection|x-frame-options|x-content-type-options|access-control-[a-z-]+|strict-transport-security|(?:www|proxy)-authenticate|x-forwarded-[a-z-]+|remote-addr|x-real-ip|x-original-url|x-rewrite-url|x-accel-redirect|x-sendfile|p3p)[ \t\r]*:|(?:[\r\n]|\xe5\x98[\x8a\x8d])[ \t]*location[ \t]*:[ \t]*(?:[a-z][\w+.-]*:|//|/|\\)|(?:[\r\n]|\xe5\x98[\x8a\x8d])[ \t]*refresh[ \t]*:[ \t]*(?:\d|[\w-]+\.[\w.-]+)|(?:[\r\n]|\xe5\x98[\x8a\x8d])[ \t]*(?:set-)?cookie[ \t]*:[ \t]*[^\s=;]+=|(?:[\r\n]|\xe5\x98[\x8a\x8d])[ \t]*link[ \t]*:[ \t]*<|(?:[\r\n]|\xe5\x98[\x8a\x8d])[ \t]*host[ \t]*:[ \t]*[\w.-]+(?::\d+)?[ \t]*(?:$|[\r\n])|(?:[\r\n]|\xe5\x98[\x8a\x8d])[ \t]*http/\d(?:\.\d)?[ \t]+\d{3}\b|\r[ \t]*[a-z][\w-]{0,40}[ \t\r]*:",
            "header injection: a line break followed by a response header or status line (response splitting)",
        ),
        rx(
            10011,
            Protocol,
            1,
            INPUT,
            LINES,
            r#"(?:^|[\r\n])[ \t]*(?:get|post|put|delete|head|options|patch|trace|connect|propfind)[ \t]+\S+[ \t]+http/\d(?:\.\d)?[ \t]*(?:$|[\r\n])|(?:get|post|put|delete|head|options|patch|trace|connect)[ \t]+(?:/|https?://)\S*[ \t]+http/\d(?:\.\d)?\r?\n[\w-]+[ \t]*:"#,
            "request smuggling: an HTTP request line inside a value",
        ),
        rx(
            10014,
            Protocol,
            1,
            NAMES_AND_COOKIES,
            PATH,
            r"[\r\n]",
            "header injection: CR or LF in an argument name or a cookie",
        ),
        rx(
            10015,
            Protocol,
            2,
            INPUT.or(Targets::OTHER_HEADERS),
            LINES,
            r"[\r\n][ \t]*[a-z][a-z\d]*-[\w-]+[ \t]*:[ \t]*\S",
            "header injection: a line break followed by a header-like name (paranoid)",
        ),
        rx(
            10020,
            Protocol,
            1,
            INPUT,
            LINES,
            r#"[\r\n][ \t]*(?:b?cc|resent-(?:to|cc|bcc|from))[ \t]*:[^\r\n]*@|^\s*[^\s@]+@[^\s@]+\s*[\r\n]+[ \t]*(?:to|from|reply-to|sender|subject|return-path|bcc|cc|content-type|mime-version)[ \t]*:|[\r\n][ \t]*(?:rcpt[ \t]+to|mail[ \t]+from)[ \t]*:|[\r\n]\.\r?\n[ \t]*(?:mail|rcpt|data|quit|rset|helo|ehlo)\b|[\r\n][ \t]*(?:e?hlo[ \t]+[\w.-]+[ \t]*(?:$|[\r\n])|apop[ \t]+\S+[ \t]+[0-9a-f]{32}|(?:retr|dele)[ \t]+\d+[ \t]*(?:$|[\r\n])|auth[ \t]+\S+[ \t]+[a-z0-9+/]{8,}=*|a?\d{1,4}[ \t]+(?:login|authenticate|select|examine|status|append|store|fetch|uid|logout|capability|lsub|create|delete|rename|subscribe)\b)"#,
            "mail header injection: a Bcc/Cc header, a header after an address, or an SMTP command",
        ),
        rx(
            10021,
            Protocol,
            2,
            INPUT,
            LINES,
            r"[\r\n][ \t]*(?:to|from|reply-to|sender|return-path|subject)[ \t]*:[^\r\n]*@",
            "mail header injection: a recipient or sender header in a value (paranoid)",
        ),
        rx(
            10012,
            Protocol,
            1,
            Targets::PATH,
            RAW,
            r"%0[ad]|[\r\n]",
            "CR or LF in the path",
        ),
        // ---- scanners ----------------------------------------------------
        words(
            11001,
            Scanner,
            1,
            Targets::HEADERS,
            RAW,
            &[
                "sqlmap",
                "nikto",
                "nessus",
                "nmap scripting engine",
                "masscan",
                "zgrab",
                "acunetix",
                "w3af",
                "dirbuster",
                "gobuster",
                "wpscan",
                "nuclei",
                "fimap",
                "havij",
                "arachni",
                "openvas",
                "netsparker",
                "appscan",
                "webinspect",
                "skipfish",
                "wfuzz",
                "ffuf",
                "feroxbuster",
                "jaeles",
                "commix",
                "xsstrike",
                "joomscan",
                "whatweb",
                "paros",
                "burpcollaborator",
                "interact.sh",
                "oast.pro",
                "zmeu",
                "morfeus",
                "dirb/",
                "grabber",
                "brutus",
                "bsqlbf",
                "sqlninja",
                "pangolin",
                "absinthe",
                "nstealth",
                "webshag",
                "vega/",
                "httpx - open-source",
                "(hydra)",
                "metasploit",
                "qualys",
                "crowdstrike",
                "xenu link",
                "cgichk",
                "webvulnscan",
            ],
            false,
            "a known attack tool in the user agent",
        ),
        // ---- path traversal / LFI ---------------------------------------
        rx(
            20001,
            Lfi,
            1,
            ALL,
            PATH,
            r#"(?:\.{2,3}[\\/;]+[^\\/;]{0,40}?){2,}|(?:^|[^\w.])\.{2,3}\\|(?:^|[\\/])\.{2,3};|(?:^|[\\/=:])\.{2,3}/+(?:etc|proc|sys|var|usr|root|home|windows|winnt|boot|dev|tmp|opt|\.)|[\\/]\.{2,3}\s*$|^\s*\.{2,}\s*$"#,
            "path traversal: `../` or `..\\`",
        ),
        rx(
            20002,
            Lfi,
            1,
            Targets::PATH
                .or(Targets::ARGS)
                .or(Targets::ARG_NAMES)
                .or(Targets::COOKIES)
                .or(Targets::HEADERS)
                .or(Targets::OTHER_HEADERS)
                .or(Targets::FILES),
            RAW,
            r"(?:%(?:25)*(?:c0%(?:25)*[a9][ef]|c1%(?:25)*[89]c|e0%(?:25)*80%(?:25)*ae|f0%(?:25)*80%(?:25)*80%(?:25)*ae|u(?:002e|2215|2216|ff0e|ff0f|ff3c)|2e%(?:25)*2e|2e\.|c0\.|ef%(?:25)*bc%(?:25)*8f))|0x2e(?:0x2e|\.)|0x5c|0x2f|\.(?:%00|%2500|\\0)|\.\.%(?:25)*(?:2f|5c)",
            "path traversal with overlong UTF-8, %u or 0x encodings",
        ),
        rx(
            20003,
            Lfi,
            1,
            INPUT_HEADERS,
            PATH,
            r#"^\s*['\x22]?(?:[^\s'\x22<>|;&]*[\\/~])?(?:etc[\\/]+(?:passwd|shadow|master\.passwd|group|gshadow|hosts|hostname|issue|motd|sudoers|crontab|fstab|mtab|profile|bashrc|environment|resolv\.conf|ssh[\\/]|httpd|apache2?[\\/]|nginx[\\/]|mysql[\\/]|php[\d.]*[\\/]|security[\\/]|pam\.d|subuid|subgid|init\.d|rc\.d|network[\\/]|redhat-release|debian_version|lsb-release|os-release|passwd-|shadow-|apt[\\/]|cron|ld\.so|opt[\\/]|var[\\/]|x11[\\/]|aliases|inittab|exports|inetd\.conf)|proc[\\/]+(?:self|\d+|version|cpuinfo|meminfo|mounts|net[\\/]|sched_debug|interrupts|cmdline|environ|stat|kcore)|sys[\\/]+(?:class|kernel|devices|block|bus|firmware|fs|module|power)|var[\\/]+(?:log|mail|spool|www|backups)[\\/]|root[\\/]|home[\\/]+[^\\/]+[\\/]\.|(?:windows|winnt)[\\/]+(?:system32|system\.ini|win\.ini|repair|debug|panther|php\.ini)|boot\.ini|win\.ini|system\.ini|inetpub[\\/]|\.(?:ssh[\\/]+(?:id_|authorized_keys|known_hosts|config)|aws[\\/]+(?:credentials|config)|docker[\\/]|kube[\\/]+config|git[\\/]+(?:config|head|index)|svn[\\/]|hg[\\/]|bash_history|zsh_history|mysql_history|psql_history|history|htpasswd|htaccess|env(?:\.[a-z]+)?(?:$|[^\w])|npmrc|pgpass|netrc|git-credentials|gnupg[\\/]|config[\\/]+gcloud)|id_(?:rsa|dsa|ecdsa|ed25519)(?:\.pub)?(?:$|[^\w])|web\.config|wp-config\.php|config\.inc\.php|localsettings\.php|[\w-]*\.(?:sql|bak|backup|old|swp|dump)(?:\.(?:gz|zip|tar|tgz|bz2|7z|rar))?(?:$|[^\w]))\S*\s*$|(?:=\s*['\x22]?|:\s*['\x22]|\.\.[\\/]+|file:/*)[\\/~]*(?:[a-z]:[\\/]+)?(?:etc[\\/]+(?:passwd|shadow|gshadow|master\.passwd|sudoers|hosts)|proc[\\/]+self[\\/]|(?:windows|winnt)[\\/]+(?:system32|win\.ini)|boot\.ini|win\.ini|\.ssh[\\/]|\.aws[\\/]|\.env\b|\.git[\\/]|wp-config\.php|web\.config|\.htpasswd)|(?:^|[^\w.-])(?:proc[\\/]+self[\\/]+environ|(?:windows|winnt)[\\/]+(?:system32[\\/]+config|win\.ini)|boot\.ini|\.aws[\\/]+credentials|\.git-credentials|wp-config\.php)"#,
            "a sensitive system or configuration file named in a value",
        ),
        rx(
            20004,
            Lfi,
            1,
            Targets::PATH,
            NORMALIZED_PATH,
            r"(?:^|/)(?:\.(?:env(?:\.[\w-]+)?|git|svn|hg|bzr|ds_store|htaccess|htpasswd|ssh|aws|docker|kube|npmrc|bash_history|history|idea|vscode|claude|cursor|continue|aider|roo|zed|cline|kiro|windsurf|rovodev|codex|opencode|a0proj|plandex|fabric|n8n|junie|aiignore|cursorignore|gemini|copilot|codeium|tabnine|mcp)(?:$|/)|etc/(?:passwd|shadow|hosts)|proc/|sys/(?:class|kernel|devices)|@fs/|@id/__x00__|wp-content/(?:debug|error|errors)\.log|web\.config$|wp-config\.php|[\w.-]+\.(?:sql|bak|old|swp|dump)(?:\.(?:gz|zip|tar|tgz|bz2|7z|rar))?$)",
            "a restricted file or directory requested in the path",
        ),
        // ---- RFI / SSRF --------------------------------------------------
        rx(
            21001,
            Rfi,
            1,
            INPUT,
            TEXT,
            r"^\s*(?:(?:ht|f)tps?|file|gopher|dict|ldaps?|tftp|sftp|smb|jar|netdoc)\s*:\s*/*\[?(?:\d{1,3}(?:\.\d{1,3}){3}|[0-9a-f]*:[0-9a-f:]+)",
            "remote file inclusion: a URL whose host is an IP address",
        ),
        rx(
            21002,
            Rfi,
            1,
            INPUT,
            TEXT,
            r"^\s*(?:file|ftps?|https?)://.*\?+\s*$",
            "remote file inclusion: a URL ending in `?` (to cut off the appended suffix)",
        ),
        rx(
            21003,
            Rfi,
            1,
            Targets::ARGS,
            TEXT,
            r"^\s*(?:(?:ht|f)tps?|file)\s*\?+$",
            "remote file inclusion: a scheme name ending in `?`",
        ),
        rx(
            21004,
            Rfi,
            1,
            INPUT,
            TEXT,
            r"(?:^|[^\w])(?:gopher|dict|ldap|tftp|jar|netdoc|phar|expect|ogg|rar|ssh2(?:\.[a-z]+)?|glob)://|(?:^|[^\w])file:/{1,3}[\w.%~]|^\s*(?:https?|ftp)://.*?(?:@|//)(?:localhost|127\.|0\.0\.0\.0|\[?::1?\]?|169\.254\.|metadata\.google\.internal|metadata\.packet\.net|metadata\.azure\.com|100\.100\.100\.200)",
            "server-side request forgery: a dangerous URL scheme or an internal address",
        ),
        rx(
            21005,
            Rfi,
            1,
            INPUT,
            TEXT,
            r"^\s*(?:https?|ftp|gopher|dict)\s*:\s*/*0(?:\.0){0,3}(?:[:/?#]|\s*$)|^\s*0(?:\.0){0,3}:\d|^\s*(?:(?:https?|ftp|gopher|dict)\s*:\s*/*)?(?:\[?[0:]*:1\]?|127(?:\.\d{1,3}){3}|0x7f[0-9a-f.x]*|2130706433|017700000001|169\.254\.169\.254|100\.100\.100\.200)(?:[:/?#]|\s*$)|^\s*(?:(?:https?|ftp|gopher|dict)\s*:\s*/*(?:[^/@]*@)?)?(?:localhost(?:\.localdomain)?\d*(?:\.localdomain\d*)?|ipv6-localhost|ip6-localhost|ip6-loopback|metadata|metadata\.google\.internal|metadata\.packet\.net|metadata\.azure\.com|metadata\.tencentyun\.com|kubernetes\.default(?:\.svc[\w.]*)?|kubernetes\.docker\.internal|(?:host|gateway)\.(?:docker|containers)\.internal|instance-data|localtest\.me|lvh\.me|[\w.-]+\.(?:nip|sslip|xip)\.io)(?:[:/?#])|^\s*(?:https?|ftp|gopher|dict)\s*:\s*/*(?:[^/@]*@)?(?:localhost|metadata\.google\.internal|kubernetes\.default[\w.]*|instance-data)\s*$",
            "server-side request forgery: a loopback, metadata or cluster-internal address",
        ),
        rx(
            21007,
            Rfi,
            1,
            Targets::QUERY,
            TEXT,
            r"(?:^|[&?])[\w\[\].-]*(?:include|require|path|file|dir|page|url|src|conf|root|template|module|theme|lang|doc|folder|inc|load|show|site|view|content|document|layout|mod|style|prefix)[\w\[\].-]*\s*=\s*(?:(?:ht|f)tps?|file|php|data)://",
            "remote file inclusion: a URL given to an include-like parameter",
        ),
        rx(
            21006,
            Rfi,
            1,
            Targets::ARGS,
            TEXT,
            r"^\s*(?:https?|ftp)://[^/?#]*\.(?:oast\.(?:pro|live|site|online|fun|me)|interact\.sh|burpcollaborator\.net|dnslog\.cn|requestbin\.net|ngrok\.io|webhook\.site|examplefoo\.bar)",
            "out-of-band interaction domain",
        ),
        // ---- command injection ------------------------------------------
        rx(
            22001,
            Rce,
            1,
            INPUT_HEADERS,
            SHELL,
            const_format_unix_sep(),
            "command injection: a shell separator followed by a Unix command",
        ),
        rx(
            22002,
            Rce,
            1,
            ALL,
            SHELL,
            r#"\$\(\(|\$\[|(?:^|[\s;|&])[<>]\(\s*[a-z/]|\$\{ifs\}|\$ifs\b|\$\{[a-z_]*:-?\d*:?-?\d*\}|\$\{!?#?[a-z_]+[#%/^,@]|\balias\s+(?:[-+]\w+\s+)*[^\s=]+=|(?:^|[^<])<<<(?:[^<]|$)|(?:^|[=:])\s*\(\s*\)\s*\{|\(\s*(?:ba)?sh\s*\)|\$\w+/tcp/|\bsh\$\w+|\$\{?shell\}?\s|^\s*~[+-]\d*\s*$|!-\d+|/[a-z]*\[!?\^?[a-z/-]+\][a-z]*|\$\{\}|\$@|\$\*|/(?:[a-z]*[?*][a-z?*]*)/(?:[a-z?*]*[?*][a-z?*]*)|/etc/[a-z]*\[!?[a-z-]+\][a-z]*|(?:^|[a-z/])\$\{?[0-9]\}?[a-z]{2}|[a-z]\$[!?\-_$#@*][a-z]|[a-z](?:``|\$\(\s*\)|[<>]\(\s*\))[a-z]|[a-z]\$\(\s*\)\s|[\w.:]+\s*\(\s*\)\s*\{\s*[\w.:]+(?:\s*\(\s*\))?\s*[|&]\s*[\w.:]+|\|\|\s*[a-z]+\s*\|\|"#,
            "command injection: shell expansion or globbing evasion",
        ),
        rx(
            22009,
            Rce,
            1,
            INPUT,
            TEXT,
            r"\{[\w/.-]*,[\w/.,-]*\}|\$\(\s*[a-z]+[\w$()-]*\s*\)",
            "command injection: brace expansion or command substitution",
        ),
        rx(
            22003,
            Rce,
            1,
            INPUT,
            TEXT,
            r"(?:^|[;&|`\n]|\$\()\s*(?:[a-z]:\\[^\s]*\\)?(?:cmd(?:\.exe)?\s*/[ck]|powershell(?:\.exe)?(?:\s|$)|pwsh(?:\s|$)|certutil(?:\.exe)?\s+-|bitsadmin(?:\.exe)?\s+/|wmic(?:\.exe)?\s|mshta(?:\.exe)?\s|rundll32(?:\.exe)?\s|regsvr32(?:\.exe)?\s|cscript(?:\.exe)?\s|wscript(?:\.exe)?\s|schtasks(?:\.exe)?\s|tasklist|taskkill|systeminfo|net\s+(?:user|localgroup)|reg\s+(?:add|query|delete)\s|netsh\s|icacls\s|iwmi\s|bcdboot|bcdedit|regedit|vssadmin|wevtutil|diskpart|takeown|fsutil|invoke-[a-z]+|iex[\s(])",
            "command injection: a Windows command after a separator",
        ),
        rx(
            22004,
            Rce,
            1,
            INPUT,
            TEXT,
            r"\b(?:invoke-(?:expression|webrequest|restmethod|command|item|wmimethod|shellcode|mimikatz)|new-object\s+(?:-\w+\s+)?(?:system\.)?net\.webclient|\.download(?:string|file|data)\s*\(|start-process\s|set-executionpolicy|add-mppreference|-(?:encodedcommand|enc|ec)\s+[a-z0-9+/=]{8,}|get-(?:wmiobject|ciminstance|process|service|childitem|content|item|acl|localuser)\b|set-(?:content|item|acl)\s|remove-item\s|\[system\.convert\]::|frombase64string|iwr\s+-?[a-z]*\s*https?:)",
            "command injection: PowerShell",
        ),
        rx(
            22005,
            Rce,
            1,
            INPUT,
            TEXT,
            r"(?:^|[;&|(]\s*)(?:for\s+(?:/[a-z]\s+(?:(?:\x22[^\x22]*\x22|[a-z]:\\\S*)\s+)?)*%%?\S+\s+in\s*\(|if\s+(?:/i\s+)?(?:not\s+)?(?:exist|defined|errorlevel|cmdextversion)\b|if(?:\s+|\s*/i\s+)(?:not\s+)?(?:\S+\s*==|\x22[^\x22]*\x22\s*==|\S+\s+(?:equ|neq|lss|leq|gtr|geq)\s))",
            "command injection: cmd.exe FOR or IF",
        ),
        rx(
            22006,
            Rce,
            1,
            INPUT,
            SHELL,
            r"/dev/(?:tcp|udp)/|\b(?:ba|z|k|da)?sh\s+-[ic]\b|\bnc(?:at)?\s+(?:-[a-z]+\s+)*[\w.-]+\s+\d+|\bmkfifo\s|\b(?:python[23]?|perl|ruby|php|node)\s+-[ecr]\s|\bsocat\s|\btelnet\s+[\w.-]+\s+\d+|\bwget\s+(?:-[a-z-]+\s+)*(?:https?|ftp)://|\bcurl\s+(?:-[a-z-]+\s+\S*\s+)*(?:https?|ftp|file|gopher|dict)://",
            "command injection: reverse shell or download",
        ),
        rx(
            22007,
            Rce,
            1,
            INPUT,
            SHELL,
            const_format_unix_start(),
            "command injection: a value that is a Unix command with arguments",
        ),
        rx(
            22008,
            Rce,
            2,
            INPUT,
            SHELL,
            const_format_unix_bare(),
            "command injection: a value that starts with a command name",
        ),
        rx(
            22010,
            Rce,
            1,
            INPUT,
            SHELL,
            r"^\s*(?:ansible-[a-z]+|chef-[a-z]+|cscli|aa-[a-z]+|visudo|bsdtar|rmt-[a-z]+)(?:\s|$)",
            "command injection: an administration tool run directly",
        ),
        rx(
            22011,
            Rce,
            1,
            INPUT,
            SHELL,
            r#"(?:^\s*|[;&|=(`<>]\s*)/?(?:usr/(?:local/)?)?s?bin/[a-z][\w.+-]*(?:\s*$|\s*[;&|<>`)]|\s+[-/$~.'\x22\d])|(?:[;&|=(`<>]\s*)/?(?:usr/(?:local/)?)?s?bin/[a-z][\w.+-]*"#,
            "command injection: a program from a system binary directory",
        ),
        // ---- PHP ---------------------------------------------------------
        rx(
            23001,
            Php,
            1,
            INPUT_HEADERS,
            TEXT,
            r"<\?(?:php|=|\s|$|xml\s*(?:[^v\s]|$))|[\[{][/\\]?php[\]}]|\?>\s*$|<script\s+language\s*=\s*['\x22]?php",
            "PHP: an opening or closing code tag",
        ),
        rx(
            23002,
            Php,
            1,
            INPUT,
            TEXT,
            r"\b(?:php|phar|zlib|data|expect|glob|compress\.(?:zlib|bzip2)|zip|rar|ogg|ssh2\.\w+)://",
            "PHP: a stream wrapper",
        ),
        rx(
            23003,
            Php,
            1,
            INPUT,
            TEXT,
            r"\$_(?:get|post|cookie|request|server|files|env|session)\b|\$globals\b|\$http_(?:raw_post_data|[a-z_]+_vars)\b|\bphp://(?:input|filter|stdin|memory)",
            "PHP: a superglobal",
        ),
        rx(
            23004,
            Php,
            1,
            INPUT_PATH,
            SQL,
            r#"(?:^|[;{}()=&|!?\[/'\x22]|<\?php|\?>)\s*@?(?:system|exec|popen|eval|array_map|fopen|fwrite|readfile|file|unserialize|ob_start|unpack|strip_tags|intval|printf|filegroup|is_array|strrev|file_exists|ini_set|putenv|posix_(?:get\w+|kill|mkfifo|setuid|setgid|setsid|uname|ttyname))\s*(?:/\*.*?\*/\s*)*\((?:$|\)|[^\d)s]|s[^)]|\d+[^\w)]|\d{2,}|\d[a-z]\w*[^\w)])|(?:^|[^\w.>$:-])assert\s*\(\s*['\x22$]|(?:^|[^\w.>$:-])(?:include|require)(?:_once)?\s*(?:\(\s*['\x22]?\s*(?:\$|(?:https?|ftps?|php|data|file|expect|phar|zip|glob)\s*:|/|\.\.|[a-z]:\\)|\s+['\x22]\s*(?:\$|(?:https?|ftps?|php|data|file|expect|phar|zip|glob)\s*:|/|\.\.|[a-z]:\\)|\s+\$[a-z_])|(?:shell_exec|passthru|proc_open|pcntl_exec|assert_options|create_function|call_user_func(?:_array)?|preg_replace|base64_decode|gzinflate|gzuncompress|gzdecode|str_rot13|convert_uudecode|hex2bin|file_get_contents|file_put_contents|show_source|highlight_file|php_uname|phpinfo|move_uploaded_file|curl_exec|curl_init|fsockopen|pfsockopen|stream_socket_client|mb_ereg_replace|register_shutdown_function|register_tick_function|get_defined_vars|escapeshellcmd|escapeshellarg|var_dump|print_r|var_export|debug_zval_dump|apache_\w+|get_current_user|zlib_decode|bzdecompress|get_defined_functions|get_defined_constants)\s*(?:/\*.*?\*/\s*)*\((?:$|\)|[^\d)s]|s[^)]|\d+[^\w)]|\d{2,}|\d[a-z]\w*[^\w)])|\(\s*['\x22]?\s*(?:system|exec|shell_exec|passthru|popen|eval|assert|phpinfo)\s*['\x22]?\s*\)\s*\(|['\x22](?:system|exec|passthru|shell_exec|popen|eval|assert)['\x22]\s*\(|\b(?:base64_decode|phpinfo|shell_exec|passthru|proc_open|pcntl_exec|str_rot13|gzinflate|php_uname|create_function|assert_options|call_user_func_array)\b"#,
            "PHP: a dangerous function call",
        ),
        rx(
            23005,
            Php,
            1,
            INPUT,
            TEXT,
            r#"(?:^|[;{}\s(])[oc]:\d+:\x22[a-z_\\][\w\\]*\x22:\d+:\{|\ba:\d+:\{(?:[isbdo]:|n;)"#,
            "PHP: a serialized object",
        ),
        rx(
            23006,
            Php,
            1,
            INPUT,
            SQL,
            r#"\$+[a-z_\x7f-\xff][\w\x7f-\xff]*(?:\s*(?:\[[^\]]*\]+|\{[^}]*\}))*\s*(?:/\*.*?\*/\s*)*\(|\$\s*\{\s*['\x22]\w*['\x22]\s*\}|\$\s*\{\s*\}|^\s*\$\s*\{\s*\w*\s*\}\s*$|\$\s*\{\s*(?:\$|@|['\x22])|\$\{[^}]*\}\s*\(|\(\s*['\x22][a-z_]+['\x22]\s*(?:\.\s*['\x22][a-z_]*['\x22]\s*)+\)\s*\(|['\x22][a-z_]+['\x22]\s*\.\s*['\x22][a-z_]+['\x22]\s*\(|\(\s*\[\s*[a-z_]+\s*\]\s*\[\s*\d+\s*\]\s*\)|\[\s*(?:system|exec|passthru|shell_exec|eval|assert|popen|proc_open)\s*\]|\)\s*(?:\[\s*\d+\s*\]\s*)*\(\s*['\x22][a-z]+['\x22]\s*\)\s*;"#,
            "PHP: a variable function call or string-built function name",
        ),
        rx(
            23007,
            Php,
            1,
            INPUT,
            TEXT,
            r"\b(?:engine|precision|serialize_precision|smtp|smtp_port|sendmail_path|include_path|short_open_tag|expose_php|unserialize_max_depth|error_reporting|variables_order|zend_extension|allow_url_(?:include|fopen)|auto_(?:prepend|append)_file|disable_functions|open_basedir|safe_mode|memory_limit|max_execution_time|display_errors|log_errors|error_log|register_globals|magic_quotes_gpc|enable_dl|file_uploads|upload_tmp_dir|session\.(?:save_path|save_handler|use_trans_sid|referer_check|upload_progress\.\w+)|mbstring\.\w+|pcre\.\w+|zend\.\w+|opcache\.\w+|phar\.readonly|cgi\.force_redirect|extension(?:_dir)?)\s*=",
            "PHP: a configuration directive",
        ),
        rx(
            23008,
            Php,
            1,
            UPLOADS,
            TEXT,
            r"\.\s*(?:php\d*|phpt|phtml|phar|pht|phps|inc|shtml|asp|aspx|jsp|jspx|cgi|pl)[\s.]*$|(?:^|[/\\])(?:\.htaccess|\.htpasswd|web\.config|wp-config[\w.-]*|\.user\.ini|php\.ini|\.boto|\.s3cfg|\.netrc|\.npmrc|\.pypirc|config\.ya?ml|sess_[\w,-]{16,})\s*$",
            "PHP: uploading a server-side script",
        ),
        // ---- Java --------------------------------------------------------
        rx(
            24001,
            Java,
            1,
            ALL,
            TEXT,
            r"\$\{(?:[^}]{0,40}(?:\$\{|:-)|\s*(?:jndi|ctx|env|sys|java|lower|upper|date|main|log4j|spring|k8s|docker|bundle|web|base64|marker|sd|event|map)\s*:)|\$\{[^}]{0,80}\b(?:jndi|ldaps?|rmi|dns|iiop|corba|nds|nis)\s*:",
            "Java: a Log4Shell (JNDI) lookup",
        ),
        rx(
            24002,
            Java,
            1,
            ALL,
            TEXT,
            r"\bjavax?\.(?:lang|io|util|net|nio|beans|rmi|security|naming|script|management|xml|sql|awt|swing|imageio|reflect|crypto)\.[a-z]|\b(?:runtime\s*\.\s*getruntime|getruntime\s*\(\)\s*\.\s*exec|processbuilder|processimpl|unixprocess|classloader|xmldecoder|scriptenginemanager|(?:java\.)?(?:lang\.)?reflect\.|getclass\s*\(\s*\)\s*\.\s*forname|\.forname\s*\(|getdeclared(?:method|field|constructor)|\.newinstance\s*\(|\.invoke\s*\(|jdbcrowsetimpl|templatesimpl|annotationinvocationhandler|badattributevalueexpexception|(?:invoker|instantiate|chained|constant|clone|map)transformer|(?:instantiate|prototypeclone|prototypeserialization|constant)factory|(?:for|while|if|switch|chained|transformer)closure|lazymap|beancomparator|priorityqueue\b.{0,40}comparator|org\.apache\.commons\.collections|org\.springframework\.|com\.sun\.|sun\.misc\.|bsh\.interpreter|groovy\.lang|clojure\.)",
            "Java: a class used for code execution or deserialization gadgets",
        ),
        rx(
            24003,
            Java,
            1,
            ALL,
            RAW,
            r"\xac\xed\x00\x05|\baced0005|\bro0ab[a-z0-9+/]|\bh4sia[a-z0-9+/]{4,}.{0,4}ro0",
            "Java: a serialized Java object",
        ),
        rx(
            24004,
            Java,
            1,
            ALL,
            TEXT,
            r"#_memberaccess|@ognl|ognlcontext|%\{\s*\(?#|\$\{\s*\(?#|#context\[|#request\.|#parameters\.|class\.module\.classloader|class\.classloader|\.getclass\(\)|@java\.lang\.|\bt\s*\(\s*java\.lang",
            "Java: OGNL or Spring expression injection",
        ),
        // ---- templates, Node.js, Python ---------------------------------
        rx(
            25001,
            Template,
            1,
            INPUT,
            TEXT,
            r#"\{\{[^}]*?(?:['\x22]?\d+['\x22]?\s*[*+/-]\s*['\x22]?\d+|\bconstructor\b|\bconfig\b|\bself\b|_self\b|\blipsum\b|\bcycler\b|\bjoiner\b|\bnamespace\b|\|\s*attr\b|__\w+__|\.mro\b|\bsubclasses\b|\bglobals\b|\bbuiltins\b|\bimport\b|\bpopen\b|\bos\.|\bsystem\b|\$eval\b|\$on\b|\bprocess\b|\brequire\b|getruntime|\bexec\b)|\{%-?\s*(?:import|debug)\b|\{%[^%]*?(?:__\w+__|\bos\.|\bpopen\b|\bsubprocess\b|\bsystem\s*\(|\blipsum\b|\bcycler\b)|<%=?[^%]*?(?:\d+\s*[*+/-]\s*\d+|\bsystem\b|\bexec\b|\beval\b|\bpopen\b|\bspawn\b|\brequire\b|runtime|\bprocess\b|\bfile\s*\.|\bio\.|\bopen\s*\(|`|\bimport\b|__\w+__|\bclass\b)[^%]*%>|\$\{\s*['\x22]?\d+['\x22]?\s*[*+/-]\s*['\x22]?\d+\s*\}|#\{\s*\d+\s*[*+/-]\s*\d+\s*\}|#\{[^}]*(?:process|require|`|system|exec|spawn)|\$\{[^}]*?(?:__\w+__|\bos\.(?:system|popen)|\bself\.module|getruntime|\.exec\s*\()|\*\{[^}]*\}|@\(\s*\d+\s*[*+]\s*\d+\s*\)|<#(?:assign|list|if|include|import)\b|\?new\s*\(|#set\s*\(\s*\$|\$class\.inspect|freemarker\.template|\{\$smarty\."#,
            "template injection: an expression in a template syntax",
        ),
        rx(
            25002,
            Template,
            1,
            INPUT,
            TEXT,
            r"\b(?:require\s*\(\s*['\x22`](?:child_process|fs|net|vm|os|http|process)['\x22`]|child_process|process\.(?:mainmodule|binding|env|kill|exit|dlopen|spawn|execpath|argv)|\.(?:exec|execsync|spawn|spawnsync|execfile|fork)\s*\(|new\s+function\s*\(|function\s*\(\s*\)\s*\{.*\}\s*\(\s*\)|(?:this|global|globalthis)\.constructor\.constructor|constructor\s*\.\s*constructor\s*\(|_\$\$nd_func\$\$_|module\.prototype|module\.exports\s*=|__proto__|constructor['\x22]?\s*\]?\s*(?:\.|\[)\s*['\x22]?\s*prototype|\b(?:process|require|console|global|globalthis|module)\s*\[|console\.\w+\.(?:call|apply|bind)\s*\(|function\s*\([^)]*\)\s*\{|__js_function|xyqktkrfrlvoqyqk|\[\s*['\x22]__proto__['\x22]\s*\]|console\.(?:log|info|warn|error|dir)\s*\(|eval\s*\(|settimeout\s*\(\s*['\x22`]|setinterval\s*\(\s*['\x22`]|while\s*\(\s*(?:[!+~(\[{-]|true|\d|infinity|new\s|this|string|nan|null|undefined)|for\s*\(\s*;\s*;\s*\))",
            "code injection: Node.js / JavaScript server-side",
        ),
        rx(
            25005,
            Template,
            1,
            INPUT,
            TEXT,
            r"^\s*data:(?:text|application)/[\w.+-]+\s*(?:[;,]|$)",
            "code injection: a data: URL with text or code",
        ),
        rx(
            25003,
            Template,
            1,
            INPUT,
            TEXT,
            r"\b(?:__import__\s*\(|__(?:class|globals|builtins|subclasses|mro|bases|base|init|dict|getattribute|code|reduce|loader)__|os\.(?:system|popen|exec[lv]p?e?|spawn[lv]p?e?|fork|kill|remove|unlink)\s*\(|subprocess\.(?:popen|call|run|check_output|check_call|getoutput)|pickle\.loads?|marshal\.loads|yaml\.(?:unsafe_)?load\s*\(|getattr\s*\(|exec\s*\(\s*compile|compile\s*\(.{0,40},\s*['\x22]|pty\.spawn|importlib)",
            "code injection: Python",
        ),
        rx(
            25004,
            Template,
            1,
            INPUT,
            TEXT,
            r#"(?:\$7:module:prototype|resolved_model|\$@0|\$1:__proto__|_formdata|\$b\d+)\b.{0,200}(?:__proto__|constructor|then|_response|_prefix)|(?:^|[^\w])process\.spawn\s*\(|\bkernel\.(?:exec|system|spawn)|\bio\.popen|\bopen3\.|`\.(?:to_s|chomp)\b|\bsystem\s*\(\s*['\x22]"#,
            "code injection: Ruby, Perl or React server components",
        ),
        // ---- NoSQL -------------------------------------------------------
        rx(
            26001,
            Nosql,
            1,
            OPERATORS,
            TEXT,
            r"(?:^|\[)\s*\$(?:ne|eq|gt|gte|lt|lte|in|nin|regex|where|exists|or|and|not|nor|expr|elemmatch|all|size|type|mod|text|function|accumulator|jsonschema|lookup)\s*(?:\]|$)",
            "NoSQL injection: a MongoDB query operator as a parameter name",
        ),
        rx(
            26002,
            Nosql,
            1,
            INPUT,
            TEXT,
            r"\$where\b|\bthis\.\w+\s*(?:==|!=|\.match\s*\()|\bdb\.\w+\.(?:find|insert|drop|remove|update)\s*\(|\{\s*['\x22]?\$(?:ne|gt|gte|lt|regex|where|nin|or|expr)['\x22]?\s*:",
            "NoSQL injection: a MongoDB operator or JavaScript condition in a value",
        ),
        // ---- LDAP --------------------------------------------------------
        rx(
            28001,
            Ldap,
            1,
            INPUT,
            TEXT,
            r"\)\s*\(\s*[&|!]\s*(?:$|[()])|\)\s*\(\s*[&|!]\s*[\w.;-]+\s*[~<>]?=|\)\s*[&|!]\s*\(\s*[\w.;-]+\s*[~<>]?=|\)\s*\(\s*[\w.;-]+\s*[~<>]?=|^\s*\*\s*\)\s*[(!&|]|\*\s*\)\s*\(|\(\s*[\w.;-]+\s*[~<>]?=\s*\*\s*\)",
            "LDAP injection: a value that closes a filter and opens another (`*)(uid=*`, `)(|(`)",
        ),
        // ---- session fixation -------------------------------------------
        rx(
            29001,
            Session,
            1,
            INPUT,
            TEXT,
            r"\.cookie\b[^;]*;\s*(?:expires|domain|path|max-age)\s*=|\bhttp-equiv\W+set-cookie\b",
            "session fixation: a value that sets a cookie (`document.cookie=...;expires=`, `<meta http-equiv=set-cookie>`)",
        ),
        when(
            rx(
                29002,
                Session,
                1,
                Targets::ARG_NAMES,
                RAW,
                r"^\s*(?:__(?:host|secure)-)?(?:jsessionid(?:sso)?|phpsessid|phpsession|aspsessionid[a-z]*|asp\.net_sessionid|sessionid|session[_-]id|_session_id|sessid|cfid|cftoken|cfsid|jservsession|jwsession|weblogicsession|laravel_session|ci_session|connect\.sid|express[.:]sid|express:sess|_flask_session|next-auth\.session-token|meteor_login_token|rack\.session|play_session|sails\.sid|cakephp|koa[.:]sess(?:\.sig)?|zend_session_id|shiny-token|_rails_session|_[a-z\d]+_session)\s*$",
                "session fixation: a session id as a parameter, without a Referer from this site",
            ),
            Condition::ForeignReferer,
        ),
        // ---- XXE ---------------------------------------------------------
        rx(
            27001,
            Xxe,
            1,
            INPUT,
            TEXT,
            r"!entity\s+%?\s*[\w.-]+\s+(?:system|public)\b|<!doctype\s+[\w:.-]+\s*\[\s*<!entity|<!doctype\s+[\w:.-]+\s+(?:system|public)\s|<xi:include\b|xmlns:xi\s*=|<!entity\s+%",
            "XXE: an external entity or XInclude",
        ),
        // ---- XSS ---------------------------------------------------------
        rx(
            30001,
            Xss,
            1,
            XSS_TARGETS_ALL,
            TEXT,
            r"<\s*/?\s*(?:[a-z]+\s*:\s*)?script\b|<\s*\??\s*import\s*implementation|\+ad[w4]-|<(?:[a-z]\s+){3,}[a-z]\b|<\s*:?\s*(?:iframe|frame|frameset|object|embed|applet|meta|base|svg|math|isindex|marquee|xss|template|noscript|vmlframe|bgsound|layer|ilayer|blink|plaintext|xmp|listing)[\s/>]",
            "XSS: a script or active-content tag",
        ),
        rx(
            30002,
            Xss,
            1,
            XSS_TARGETS_ALL,
            TEXT,
            r"(?:^|[\s\x22'`/;<>])on[a-z]{3,40}\s*=|(?:^|[\s\x22'`/;<])(?:formaction|srcdoc|xlink:href|data-bind|ng-[a-z]+)\s*=",
            "XSS: an event handler or active attribute",
        ),
        rx(
            30003,
            Xss,
            1,
            XSS_TARGETS,
            TEXT,
            r#"(?:j\s*a\s*v\s*a|v\s*b|l\s*i\s*v\s*e)\s*s\s*c\s*r\s*i\s*p\s*t\s*:|data\s*:\s*(?:text/html|image/svg|application/(?:x-)?(?:javascript|ecmascript|xhtml)|text/(?:javascript|xml|plain)\s*;\s*base64)|-moz-binding|\bexpression\s*\(|@import\s*['\x22(u]|url\s*\(\s*['\x22]?\s*(?:javascript|vbscript|data)\b|behavior\s*:\s*url|(?:^|[\s'\x22=(])data\s*:[\w/+.;=\s-]{0,60},\s*<[a-z!/]"#,
            "XSS: a script URL or CSS expression",
        ),
        rx(
            30004,
            Xss,
            1,
            XSS_TARGETS,
            TEXT,
            r#"<link[\s/]|<[a-z]+:[a-z][\w-]*\b[^>]*?[\s/\x22'](?:src|href|data)\s*=|<(?:form|input|button|details|select|textarea|keygen|isindex|animate|set)\b[^>]*?[\s/\x22'][\w:-]+\s*=|<[a-z][\w:-]*\b[^>]*?[\s/\x22'](?:dynsrc|lowsrc|background|codebase|code|datasrc|formaction)\s*=|<[a-z]+\s+[^>]*\bxmlns(?::\w+)?\s*="#,
            "XSS: an HTML tag with a dangerous attribute",
        ),
        rx(
            30005,
            Xss,
            1,
            XSS_TARGETS,
            SQL,
            r"\bdocument\s*\.\s*(?:cookie|write|writeln|domain|location|body|createelement|queryselector(?:all)?|getelementby\w+|forms|images|scripts|implementation|documentelement)\b|\bwindow\s*\.\s*(?:location|open|name|eval|execscript|opener|parent|top|frames)\b|\b(?:self|window|top|parent|this|globalthis|frames|document)\s*\)?\s*\[\s*['\x22]|\b(?:self|window|top|parent|this|globalthis|frames|document)\)?\[`|\b(?:settimeout|setinterval|setimmediate|execscript|btoa|atob)\s*\(|(?:\+|!)\s*!?\s*\[\]\s*(?:\+|\)|\]|$)|\.innerhtml\s*=|\.outerhtml\s*=|\.parentnode\b|\btop\s*\.\s*(?:frame|location)|\b(?:alert|prompt|confirm)\s*(?:\(|`)|string\s*\.\s*fromcharcode|\batob\s*\(|\[\s*\]\s*\.\s*(?:sort|map|filter|constructor)|\bself\s*\[|\bwindow\s*\[|\bfetch\s*\(\s*['\x22`]|\$\.getscript|\bimport\s*\(\s*['\x22`]|<!--|-->|<!\[cdata\[|\]\]>",
            "XSS: a JavaScript sink or DOM access",
        ),
        rx(
            30006,
            Xss,
            1,
            Targets::COOKIES.or(Targets::HEADERS).or(Targets::ARGS),
            TEXT,
            r"<\s*style\b|<\s*[a-z]+[^>]*\bstyle\s*=\s*[\x22']?[^\x22']*(?:url\s*\(|expression|@import|behavior)|\bstyle\s*=\s*[^>]*?:\s*url\s*\(",
            "XSS: a style sheet injection",
        ),
        rx(
            30007,
            Xss,
            2,
            XSS_TARGETS,
            TEXT,
            r"<\s*[a-z][\w:-]*(?:\s+[\w:-]+(?:\s*=\s*(?:\x22[^\x22]*\x22|'[^']*'|[^\s>]+))?)*\s*/?>|<\s*/\s*[a-z][\w:-]*\s*>",
            "XSS: any HTML tag",
        ),
        // ---- SQL injection ----------------------------------------------
        rx(
            40001,
            Sqli,
            1,
            INPUT,
            SQL,
            r#"(?:['\x22)]|\b\d+)\s*(?:\bor\b|\band\b|\bxor\b|\|\||&&|\bdiv\b|\bhaving\b|\bwhere\b|\bwhen\b)\s*[\s('\x22!~+-]*(?:[\w.@]+|'[^']*'|\x22[^\x22]*\x22)[\s)'\x22]*(?:[=<>!~]+\s*(?:['\x22(@\d-]|[\w.]+\s*(?:$|[\s)'\x22#;=<>!-]))|\blike\s*['\x22\d(@]|\bis\s+(?:not\s+)?(?:null|true|false)\b|\bin\s*\(|\bbetween\s+\S+\s+and\b|\bregexp\b|\brlike\b|\bsounds\s+like\b|\bglob\s*['\x22]|\bmatch\s*\()"#,
            "SQL injection: a boolean condition after a quote or number",
        ),
        rx(
            40002,
            Sqli,
            1,
            INPUT,
            SQL,
            r"\bunion\b\s*(?:all\b|distinct\b|\(|\s)*\s*select\b|\bunion\s+(?:all\s+)?\(?\s*(?:values|table)\b",
            "SQL injection: UNION SELECT",
        ),
        rx(
            40003,
            Sqli,
            1,
            INPUT,
            SQL,
            r"(?:['\x22`)]|\b\d+)\s*;\s*(?:select|insert|update|delete|drop|alter|create|truncate|exec|execute|declare|shutdown|grant|revoke|rename|replace|merge|call|set|waitfor|use|show|desc|load|handler|backup|restore|kill|begin|commit|rollback|copy)\b|;\s*(?:drop\s+(?:table|database|schema|user)|shutdown\b|declare\s+@|exec(?:ute)?\s+(?:master|xp_|sp_|\()|waitfor\s+delay|select\s+(?:\*|@@|sleep|benchmark|pg_sleep|case|if|\d|[\w.]+\s*\(|[\w.]+\s+from\b)|sleep\s*\()",
            "SQL injection: a stacked statement",
        ),
        rx(
            40004,
            Sqli,
            1,
            INPUT_PATH,
            SQL,
            r#"(?:^|[^\w.$:-])(?:sleep|benchmark|pg_sleep)(?:\(|\s+\(\s*(?:$|[)'\x22@(*\d]|0x|select\b))|(?:^|[^\w.$:-])(?:lo_get|dbms_pipe\.receive_message|dbms_lock\.sleep|dbms_\w+\.\w+|utl_(?:http|inaddr|file|smtp)\.\w+|randomblob|load_file|extractvalue|updatexml|xmltype|geometrycollection|multipoint|multilinestring|multipolygon|linestring|name_const|sqlite_compileoption_(?:used|get)|sqlite_version|sys_eval|sys_exec|xp_cmdshell|xp_dirtree|xp_regread|sp_executesql|sp_oacreate|sp_makewebtask|openrowset|opendatasource|group_concat|json_(?:extract|keys|object|build_object|arrayagg|agg|value|query|table)|jsonb_\w+|to_tsvector|make_set|find_in_set|concat_ws|unhex|current_user|session_user|system_user|connection_id|last_insert_id|row_count|found_rows|char_length|procedure\s+analyse|pg_read_file|pg_ls_dir|lo_import|lo_export|dblink\w*|current_setting|set_config|query_to_xml|string_agg|listagg|xmlagg|wm_concat)\s*\(|(?:^|[^\w.$:`-])(?:div|elt|starts_with|unistr|ifnull|nullif|coalesce|iif|decode|encode|compress|uncompress|concat|substring|substr|mid|ascii|ord|char|chr|nchar|hex|bin|conv|md5|sha1|sha2|crc32|database|schema|sysdate|curdate|current_timestamp|instr|locate|lpad|rpad|ltrim|rtrim|trim|insert|lcase|ucase|collation|charset|array_agg)(?:\((?:$|[^\ds]|s[^)]|\d+[^\w)]|\d{2,}|\d[a-z]\w*[^\w)])|\s+\(\s*(?:$|[)'\x22@(*\d]|0x|select\b))|(?:^\s*|[(=,'\x22]\s*)(?:rand|pow|power|exp|sin|cos|tan|sqrt)\s*\(\s*(?:$|\)|\d\d|\d[^\w)])"#,
            "SQL injection: an SQL function call",
        ),
        rx(
            40013,
            Sqli,
            1,
            INPUT_PATH,
            SQL,
            r#"\bwaitfor\s+(?:delay|time)\s+['\x22\d@]|\bpg_sleep\b|\)\s*like\s*\(|::\s*(?:double\s+precision|float\d?|real|date|timestamp\w*|char|varchar|regproc\w*|oid|name|xml)\b|\b\d+\.e\s*(?:\(|\.[a-z]|,)|\b\d+\s+as\s+['\x22`]\w+['\x22`]\s+from\b|[\x22`]\s*(?:regexp|rlike)\b|`\s*as\s*`[^`]+`\s*from\b|;\s*(?:truncate\s*(?:table\b|\[|\w+\s*$)|drop\s+(?:table|database|schema|user|view|index)\b|shutdown\s*(?:$|\bwith\b)|alter\s+(?:table|user|database|system)\b|create\s+(?:table|user|database|function|procedure|trigger)\b|delete\s+from\b|insert\s+into\b|update\s+\w+\s+set\b)|^\s*(?:table_name|column_name|schema_name|table_schema)\s*\(?\s*$|\bselect\s+(?:[\w.]+\s*,\s*)*(?:table_name|column_name|schema_name|table_schema)\b"#,
            "SQL injection: delays, casts and operators typical of injected queries",
        ),
        rx(
            40005,
            Sqli,
            1,
            INPUT,
            TEXT,
            r#"(?:^\s*|[\w)\]@.])['\x22`]\s*\)*\s*(?:;\s*)?(?:--[\s-]*$|--[^\s\w]|#\s*$|%00)|(?:^\s*|[\w)@.])['\x22`]\)*/\*|^[^\s'\x22`]*[\w@.)]['\x22`]\s*\)*\s*;\s*$|(?:^|[\w)])['\x22`]--|['\x22`]\s*\)*\s*(?:or|and)\s+[\w'\x22]+\s*(?:--|#|/\*)|^\s*['\x22`][\s)]*[\s)](?:or|and|\|\||&&|union|order|group|limit|having|procedure|into)\b|^\s*['\x22`]\s*\)*\s*;|^\s*\d+\s*['\x22`)]\s*(?:or|and|\|\||&&|;)|\b(?:or|and)\s+(?:not\s+)?(?:true|false|null|\d+)\s*(?:--|#|/\*|;)"#,
            "SQL injection: a quote closing the string, then a comment or operator",
        ),
        rx(
            40006,
            Sqli,
            1,
            INPUT_PATH,
            SQL,
            r"(?:^|[('\x22`;]\s*|\b\d+\s+|\b(?:or|and|union|not|exists|in)\s*\(?\s*)select\s+(?:\*|all\b|distinct\b|top\s|null\b|@@|\d+\s*(?:,|from\b|$)|[\w.`\x22\[\]]+\s*\(|(?:[\w.`\x22\[\]]+\s*,\s*)+[\w.`\x22\[\]]+\s+from\b|[\w.`\x22\[\]]+\s+from\s+[\w.`\x22\[\]]+\s*(?:$|\bwhere\b|\blimit\b|\border\b|\bgroup\b|\bunion\b|\bjoin\b|[;)]|\binto\b))",
            "SQL injection: a SELECT statement",
        ),
        words(
            40007,
            Sqli,
            1,
            INPUT,
            SQL,
            &[
                "information_schema",
                "sqlite_master",
                "sqlite_temp_master",
                "pg_catalog",
                "pg_shadow",
                "pg_user",
                "pg_database",
                "pg_tables",
                "mysql.user",
                "mysql.db",
                "sys.objects",
                "sys.tables",
                "sys.columns",
                "sysobjects",
                "syscolumns",
                "systables",
                "msysobjects",
                "msysaccessobjects",
                "msysqueries",
                "all_tables",
                "all_tab_columns",
                "user_tables",
                "user_objects",
                "dba_users",
                "v$version",
                "@@version",
                "@@datadir",
                "@@hostname",
                "@@basedir",
                "@@servername",
                "@@identity",
                "xp_cmdshell",
                "northwind",
                "master..sysdatabases",
                "master.dbo",
                "pg_stat_activity",
                "rdb$",
                "db_name(",
                "tempdb",
                "msdb",
                "pg_namespace",
                "pg_proc",
                "pg_class",
            ],
            true,
            "SQL injection: a system catalog",
        ),
        rx(
            40008,
            Sqli,
            1,
            INPUT,
            SQL,
            r#"\binsert\s+into\s+[\w.`\x22\[\]]+\s*(?:\(|values\b|select\b|set\b)|(?:^|;)\s*replace\s+(?:into\s+)?[\w.`\x22\[\]]+\s*\([^)]*\)\s*values\s*\(|\bdelete\s+from\s+[\w.`\x22\[\]]+\s*(?:where\b|;|$)|\bdrop\s+(?:table|database|schema|view|user|function|procedure|trigger|index)\s+(?:if\s+exists\s+)?[\w.`\x22\[\]]+\s*(?:;|$|\bcascade\b|\bpurge\b)|\btruncate\s+table\s|\balter\s+(?:table|user|database)\s+[\w.`\x22\[\]]+\s+(?:add|drop|modify|change|rename|alter|owner|identified|with)\b|\bcreate\s+(?:temporary\s+)?(?:table|user|function|procedure|trigger|database|view)\s+(?:if\s+not\s+exists\s+)?[\w.`\x22\[\]]+\s*(?:\(|\bas\s+select\b|\bidentified\s+by\b|\bwith\s+password\b)|\bupdate\s+[\w.`\x22\[\]]+\s+set\s+[\w.`\x22\[\]]+\s*=|\bexec(?:ute)?\s+(?:master\.|xp_|sp_|\(|immediate\b)|\bdeclare\s+@|\bload\s+data\s+(?:local\s+)?infile\b|\binto\s+(?:out|dump)file\b|^\s*/?\s*create\s+(?:table|user|database)\s+\w+\s*$|\bgrant\s+(?:all|select|insert|update|delete|execute)(?:\s+privileges)?(?:\s*,\s*\w+)*\s+on\s+[\w.`\x22*]+\s+to\s|\bshutdown\s+with\s+nowait\b"#,
            "SQL injection: a data-changing or administrative statement",
        ),
        rx(
            40009,
            Sqli,
            1,
            INPUT,
            SQL,
            r"(?:^|[\s(])(?:or|and|xor|having|where|when|\|\||&&)\s+(?:\d+|'[^']*'|\x22[^\x22]*\x22)\s*(?:=|<=>|<>|!=|\blike\b|\bis\s+(?:not\s+)?(?:null|true|false)\b|\bin\b|\bregexp\b|\brlike\b)\s*(?:\d|'|\x22|\(|@|\b(?:true|false|null|select)\b|$)|(?:^|[\s(])(?:or|and|xor|having|where|\|\||&&)\s+\d+[<>]\d|\w['\x22]\s*(?:=|<=>|<>|!=)\s*['\x22]|['\x22]\w*['\x22]\s*(?:=|<>|!=)\s*['\x22]|\b(?:or|and|\|\||&&)\s+(?:not\s+)?(?:true|false|null|exists|\d+)\s*$|\b(?:or|and)\s+(?:not\s+)?(?:exists\s*\(|sleep\s*\(|benchmark\s*\(|select\s+(?:\*|\d|@@|null|[\w.]+\s*\(|count\b))",
            "SQL injection: a tautology",
        ),
        rx(
            40010,
            Sqli,
            1,
            INPUT_PATH,
            SQL,
            r#"(?:^|[\s'\x22`)])(?:or|and|\|\||&&)\s+(?:[\w.]+\((?:[^()]|\([^()]*\))*\)\s*(?:[=<>!]|--|#|/\*|;|$)|'\{|'\[|[\w.]+\s*(?:->>?|#>>?|@>|<@|\?\||\?&))|'\s*(?:->>?|#>>?|@>|<@|\?\||\?&|\?)\s*(?:'|array\s*\[)|['\x22)\d]\s*::\s*(?:int|integer|text|json|jsonb|varchar|bigint|numeric|regclass|bool)\b|^\s*[\w.]+::(?:int|integer|text|json|jsonb|varchar|bigint|numeric|regclass|bool)\s*$|\$\.[\w\[\]]+'\s*(?:=|<|>)"#,
            "SQL injection: JSON operators or casts in a condition",
        ),
        rx(
            40011,
            Sqli,
            1,
            INPUT,
            SQL,
            r"['\x22`)]\s*(?:order|group)\s+by\s+(?:\d+|[\w.`]+\s*(?:asc|desc|,|--|#|$|;|\)))|\border\s+by\s+\d+\s*(?:$|[;#)])|\bgroup\s+by\s+.{1,60}\bhaving\b|\bcase\s+when\s.{0,60}?(?:=|<|>|\bis\s|\blike\s|\bin\s*\(|\bexists\s*\(|\bnull\b|\bselect\b|\d).{0,60}?\bthen\b|['\x22`)]\s*(?:limit|offset)\s+\d|\bprocedure\s+analyse\b|['\x22`]\s*(?:\+|\|\|)\s*(?:\(?\s*select\b|[\w.]+\s*\()|\binto\s+@\w|@@\w+|\bchar\s*\(\s*\d+\s*(?:,\s*\d+\s*)*\)\s*(?:\+|\|\|)",
            "SQL injection: clauses and concatenations typical of injected queries",
        ),
        rx(
            40012,
            Sqli,
            2,
            INPUT,
            SQL,
            r"\b(?:select|union|insert|update|delete|drop|alter|create|exec|declare)\b.{0,80}\b(?:from|into|where|table|values|set)\b|['\x22`]\s*(?:or|and|xor)\b|\b0x[0-9a-f]{6,}\b|\b(?:or|and)\s+[\w.]+\s*(?:=|<|>)|;\s*$",
            "SQL injection: SQL keywords in a value (paranoid)",
        ),
    ];
    for def in &mut d {
        // Scanner and protocol signals are strong evidence already at PL1; the
        // paranoid catch-alls add less on their own.
        if def.paranoia >= 2 {
            def.severity = Severity::Warning;
        }
    }
    d.push(sev(
        rx(
            10013,
            Protocol,
            2,
            Targets::METHOD,
            RAW,
            r"^(?:track|debug|propfind|proppatch|mkcol|copy|move|lock|unlock|search|connect)$",
            "an unusual HTTP method",
        ),
        Severity::Warning,
    ));
    d.extend(precise_paranoid_defs());
    d
}

/// Paranoia-2 rules precise enough to count in full (critical), unlike the
/// paranoid catch-alls that match anywhere: most judge the shape of a whole
/// value (a value that *is* an SQL operator, begins with a function call or
/// a condition, or ends in a dangling one), which prose and code rarely
/// have from end to end; the others need a syntax of their own (a template
/// tag, an obfuscated address, an off-site URL).
fn precise_paranoid_defs() -> Vec<Def> {
    use Family::*;
    vec![
        rx(
            25006,
            Template,
            2,
            INPUT,
            TEXT,
            r"\{%-?\s*(?:include|extends|load|from|for|if|set|block|macro|call|filter|with|print|raw)\b|<%=?[^%]*%>",
            "template injection: a template tag (paranoid)",
        ),
        rx(
            21008,
            Rfi,
            2,
            INPUT,
            TEXT,
            r"^\s*[a-z][\w+.-]*:/*\[?(?:\d{8,}|0x[0-9a-f]{6,}|0x[0-9a-f]{1,2}\.0x|0[0-7]{2,}\.|\d{1,3}\.\d{4,}|\d{1,3}\.\d{1,3}\.\d{4,}|[0:]*:ffff:|\\+[a-z]\\)|^\s*[a-z][\w+.-]*:/+(?:\xe2[\x91-\x93][\x80-\xbf])+|^\s*[a-z][\w+.-]*:/+[^/\s]*\xe3\x80\x82",
            "server-side request forgery: an address written to hide it (decimal, hex, octal, circled or ideographic digits)",
        ),
        when(
            rx(
                21009,
                Rfi,
                2,
                Targets::ARGS.or(Targets::PATH),
                PATH,
                r"^\s*(?:(?:jar|url|view-source):)*(?:file|ftps?|https?|gopher|ldaps?|dict|local_file|netdoc|jar|tftp|sftp|smb|nfs)\s*:\s*/|/(?:file|ftps?|https?):/{1,2}[^/]",
                "remote file inclusion: a URL to another site in an argument or the path (paranoid)",
            ),
            Condition::ForeignUrl,
        ),
        rx(
            22012,
            Rce,
            2,
            INPUT,
            SHELL,
            r"\$\{?\w+\}?\$\{?\w+|(?:^|[;&|])\s*\$\{?[a-z_]\w*\}?\s+[-/]",
            "command injection: a command spelled from variables (paranoid)",
        ),
        rx(
            25007,
            Template,
            1,
            INPUT,
            TEXT,
            r"@+\{\s*\[",
            "code injection: Perl interpolation of an expression (`@{[ ... ]}`)",
        ),
        rx(
            26003,
            Nosql,
            2,
            Targets::ARG_NAMES,
            RAW,
            r"__(?:startswith|istartswith|endswith|iendswith|contains|icontains|exact|iexact|regex|iregex|gt|gte|lt|lte|in|has_keys?|has_any_keys|isnull|search|range)\s*$",
            "ORM injection: a Django lookup in a parameter name (paranoid)",
        ),
        rx(
            10023,
            Protocol,
            2,
            INPUT,
            LINES,
            r"[\r\n][ \t]*(?:list|top|stat|uidl|user|pass|quit|noop|rset|auth|vrfy|expn|data|starttls)(?:[ \t]+\S+)*[ \t]*(?:$|[\r\n])",
            "mail command injection: a POP3 or SMTP command on a line of its own (paranoid)",
        ),
        rx(
            40020,
            Sqli,
            2,
            INPUT,
            SQL,
            r#"(?:^|=)\s**(?:abs|ascii|avg|bin|cast|ceil(?:ing)?|char(?:_length)?|chr|coalesce|concat(?:_ws)?|conv|convert|count|curdate|current_(?:date|time|timestamp|user)|database|date(?:diff|_format|_add|_sub)?|day(?:name|ofweek|ofyear)?|decode|default|degrees|elt|encode|execute|exp|extract|field|find_in_set|floor|format|from_unixtime|greatest|group_concat|hex|hour|if|ifnull|in|insert|instr|isnull|last_insert_id|lcase|least|left|len|length|ln|load_file|local(?:time(?:stamp)?)?|locate|log(?:2|10)?|lower|lpad|ltrim|make_set|max|md5|mid|min|minute|mod|month(?:name)?|now|nullif|oct|ord|password|pi|position|pow(?:er)?|quarter|quote|radians|rand|repeat|replace|reverse|right|round|rpad|rtrim|schema|second|sha[12]?|sign|sin|sleep|soundex|space|sqrt|strcmp|substr(?:ing)?|sum|sysdate|tan|time|timestamp|trim|truncate|ucase|unhex|upper|user|uuid|values|version|week|year)[^\w(]{0,6}\(\s*\S{0,20}\s*$"#,
            "SQL injection: a value that is an SQL function call (paranoid)",
        ),
        rx(
            40021,
            Sqli,
            2,
            INPUT,
            SQL,
            r#"(?:^|=)\W{0,4}(?:and|or|xor|div|&&|\|\|)\s*\(?\s*(?:not\s+)?[\w.@'\x22`]*\s*(?:[=<>!]=?=?|<=>|<>)|^\s*\S+\s+(?:or|and|xor)\s*\(?\s*$|(?:^|=)\s*(?:[;>]|--)\s*(?:update|drop|alter|select|insert|delete|exec(?:ute)?|truncate|create|declare|shutdown)\b|(?:^|=)\s*[;>]?\s*set\s+@\w|^\s*\(+\s*select\s*$|[=(]\s*\(\s*select\s*$"#,
            "SQL injection: a value that is a condition or a statement fragment (paranoid)",
        ),
        rx(
            40022,
            Sqli,
            2,
            INPUT,
            SQL,
            r#"^\s**(?:[<>!=]=?=?|<=>|<>|>>|<<|&&|\|\||->>?|xor|regexp|rlike|not\s*null|notnull|is\s+(?:not\s+)?null|like\s+null|order\s+by|group\s+by|having|union(?:\s+all)?|execute\s+\w+|select\s*\(\s*case)\s*$|^\s*from\s+[\w`.\x22\[\]]+\s+(?:where|limit|group\s+by|order\s+by|join|inner|left)\b|^\s*\\?['\x22`]\s*(?:alter|union|select|drop|insert|update|delete)[\s/]|^\s*n?varchar\s*$"#,
            "SQL injection: a value that is an SQL operator or clause (paranoid)",
        ),
        rx(
            40023,
            Sqli,
            2,
            INPUT,
            TEXT,
            r#"\)\s*as\s+[\w`'\x22]+\s+from\b|^\W*\d*\s*as\s*\S*\s+(?:not\s+)?from\b|(?:^|['\x22`\s])(?:or|xor)\s+(?:'[^']*'|\x22[^\x22]*\x22|[\w.]+)\s*[<>!=-]\s*$|^\s*['\x22`]?\s*xor\b|(?:^|\w)['\x22`]\s*(?:[|&^<>=/%+*-]|\bmod\b|\bis\b|\bnot\b|\bsounds\s+like\b|\blike\b|\bglob\b)[^'\x22`\n]*--\s*$|\w['\x22`](?:or|and)\b|\\['\x22`]\s*(?:or|and)\b|\w['\x22`]\s*(?:collate|escape|notnull|ilike|unlikely|likelihood)\b"#,
            "SQL injection: an alias or a quote followed by a condition (paranoid)",
        ),
        rx(
            40024,
            Sqli,
            2,
            INPUT,
            SQL,
            r#"['\x22]\s*,\s*['\x22]\d*['\x22]\s*=\s*['\x22]|\bvalues\s*\(\s*['\x22]|['\x22]\s*,\s*(?:0x[0-9a-f]+|\(\s*\d+\s*\))|^\s*,\s*\w+['\x22]\s*=|\w'\s*'\s*\d|^'\s*glob\b|['\x22]\s*or\s*\(|(?:^|[\s,(])['\x22]?\d+['\x22]?\s*(?:=|<=>|!=|<>|\blike\b|\bis\s+not\b|\bnot\s+regexp\b)\s*['\x22]?\d+['\x22]?\s*$|['\x22]\s*(?:and|or)\s+\w+\s+(?:glob|regexp|like)\s+\w+|\bif\s*\(\s*\d+\s*=|\)\s*when\s+\d+\s+then\b|\bexcept\s+(?:select|values)\b|\blike\s*['\x22]\s*$|['\x22]\|\|\s*(?:true|false|\d)|\barray\s*\[\s*\w+\s*\]\s*is\s+(?:not\s+)?null|~\s*all\s*\(\s*array|['\x22]\s*(?:or|and)\s+\w+\s*\("#,
            "SQL injection: a tautology, a list of quoted values or a clause fragment (paranoid)",
        ),
        rx(
            40025,
            Sqli,
            2,
            INPUT,
            TEXT,
            r#"/\*!\d*|[a-z]/\*[^*\s/]*\*/[a-z]|\\0x[0-9a-f]+|\bselect\s+0x[0-9a-f]+|\b(?:xp_\w+|sp_(?:password|executesql|oacreate|makewebtask|addextendedproc|configure)|utl_http|openrowset|opendatasource|msdasql)\b|;\s*--\s*$|\bor\s*--"#,
            "SQL injection: MySQL comments, hex literals, and stored procedures (paranoid)",
        ),
        rx(
            40026,
            Sqli,
            2,
            Targets::PATH,
            SQL,
            r"(?:['\x22]|\b\d+)\s*(?:or|and)\s+['\x22]?\d+['\x22]?\s*=\s*['\x22]?\d+|\bunion\s+(?:all\s+)?select\b|\bwaitfor\s+delay\b|['\x22]\s*\)*\s*(?:or|and)\s+\d+\s*[=<>]",
            "SQL injection in the path (paranoid)",
        ),
    ]
}

/// The Unix commands an injected command line runs (after a separator).
macro_rules! unix_commands {
    () => {
        "whoami|uname|ifconfig|ipconfig|wget|curl|ncat|netcat|nc|socat|telnet|nmap|bash|zsh|ksh|csh|tcsh|dash|busybox|python[23]?|perl|ruby|php[57]?|lua|node|tclsh|gcc|chmod|chown|chgrp|chattr|useradd|usermod|passwd|sudo|su|crontab|ssh|scp|sftp|tftp|ftp|rsync|base64|xxd|openssl|mkfifo|mknod|nohup|setsid|xargs|awk|gawk|nawk|sed|dd|tar|gzip|gunzip|bzip2|zip|unzip|rm|rmdir|mv|cp|ls|cat|hexdump|strings|head|tail|more|less|grep|egrep|fgrep|find|locate|ps|pstree|kill|pkill|killall|netstat|ss|lsof|id|groups|lastlog|env|printenv|export|echo|printf|sleep|ping|ping6|traceroute|nslookup|dig|hostname|getent|systemctl|service|iptables|mount|umount|insmod|modprobe|shutdown|reboot|halt|poweroff|history|uptime|df|du|who|finger|pwd|touch|wc|sort|uniq|cut|tr|diff|stat|readlink|realpath|which|whereis|eval|exec|timeout|time|docker|kubectl|mysql|psql|sqlite3|mongo|redis-cli|vi|vim|nano|emacs|man|apt|apt-get|yum|dnf|apk|pip|pip3|npm|gem|java|javac|jshell|git|svn|cmake|visudo|ansible|ansible-[a-z]+|cscli|bsdtar|rmt|aptitude|dpkg|rpm|sh|ldd|strace|ltrace|gdb|nproc|lscpu|lsblk|lsmod|dmesg|journalctl|unset|ulimit|umask|tee|shred|wipe|chroot|runuser|pkexec|doas|tmux|sqlplus|mongosh|7z|xz|zcat|bzcat|zgrep|base32|basenc|shuf|iconv|rvim|vimdiff|rview|ncftp|lftp|lynx|w3m|elinks|aria2c|axel|fetch|perf|flock|cpulimit|uconv|ssh-copy-id|lastlogin|rmt-[a-z]+"
    };
}

fn const_format_unix_sep() -> &'static str {
    // Separator, optional prefixes (sudo, time, env, a path), then a command
    // followed by something that is clearly an argument or the end. A
    // backtick is a separator too, but prose puts code in backticks
    // (`` `sudo` ``, `` `git push` ``): there the command must come with a
    // shell argument, or close the value (`` `id` ``).
    concat!(
        r"(?:[;|\n\r]|(?:^|[^(\[,&])&|\$\(|[<>]\(|\|\||&&)\s*(?:(?:sudo|time|nohup|env|exec|command|builtin|nice|timeout\s+\d+)\s+)*(?:[\w.~-]*/)*",
        "(?:",
        unix_commands!(),
        ")",
        r"(?:\s*$|\s*[;&|<>`)}\n]|\s+[-/.~$*?\d{+\x22'@%:\\]|\s+[a-z_][\w.-]*\s*(?:$|[;&|<>`)}\n]|\s+[-/.~$*?\d])|\s+(?:https?|ftp)://)",
        r"|`\s*(?:(?:sudo|time|nohup|env|exec)\s+)*(?:[\w.~-]*/)*(?:",
        "whoami|id|uname|ifconfig|ipconfig|hostname|uptime|pwd|ps|env|printenv|cat|ls|echo|sleep|ping|nslookup|dig|wget|curl|nc|ncat|netcat|bash|sh|zsh|python[23]?|perl|ruby|php|base64|rm|chmod|touch|nohup|sudo|su|head|tail|find|grep|xargs|awk|sed",
        r")(?:\s*`\s*(?:$|[;&|<>}\n])|\s*[;&|<>}\n]|\s+[-/.~$*?\d{+@%:\\]|\s+(?:https?|ftp)://)",
        // Commands that are also English words (a table's `| Date |`) need
        // an argument that is clearly one.
        r"|(?:[;|\n\r]|&&)\s*(?:date|top|column|fold|comm|bridge|trap)(?:\s+[-/~$'\x22\\]|\s+[a-z_][\w.-]*\s*(?:$|[;&\n]))",
    )
}

fn const_format_unix_start() -> &'static str {
    concat!(
        r"^\s*(?:(?:sudo|time|nohup|env|exec)\s+)*(?:/(?:usr/)?s?bin/)?",
        "(?:",
        "whoami|uname|ifconfig|wget|curl|ncat|netcat|nc|socat|nmap|bash|zsh|ksh|busybox|python[23]?|perl|ruby|php|chmod|chown|useradd|crontab|ssh|base64|xxd|openssl|mkfifo|nohup|xargs|awk|sed|rm|cat|ls|id|ps|netstat|env|echo|printf|ping|nslookup|dig|getent|systemctl|iptables|uptime|pwd|touch|readlink|which|docker|kubectl|mysql|psql|visudo|ansible|ansible-[a-z]+|cscli|bsdtar|rmt|aptitude|sh|find|grep|head|tail|kill|tar|wc|chattr|timeout|time|strace|dmesg|lscpu|lsblk|nproc|gunzip|zcat|zstdcat|bzcat|xzcat|zless|zmore",
        ")",
        r"(?:\s+[-/~$|<>;&`]|\s*[;&|<>`]|\s+\S+\s*[;&|<>`]|\s+[\w.-]*/)",
        // A command run through a prefix (`time`, `nohup`, `strace`) is a
        // command line even without arguments.
        r"|^\s*(?:time|strace|ltrace|nohup|sudo|nice|timeout\s+\d+)\s+(?:[\w.~-]*/)*(?:whoami|uname|ifconfig|ipconfig|wget|curl|nc|ncat|netcat|socat|bash|sh|zsh|python[23]?|perl|ruby|php|id|cat|ls|ps|env|ping|nslookup|dig|bsdtar|tar|nmap|ssh|telnet|rm|chmod|base64)\b",
    )
}

fn const_format_unix_bare() -> &'static str {
    concat!(
        r"^\s*(?:(?:sudo|time|nohup|env|exec)\s+)*(?:/(?:usr/)?s?bin/)?",
        "(?:",
        "whoami|uname|ifconfig|wget|curl|ncat|netcat|socat|nmap|bash|zsh|busybox|python[23]?|perl|ruby|chmod|chown|useradd|crontab|ssh|base64|xxd|openssl|mkfifo|nohup|xargs|awk|netstat|nslookup|getent|systemctl|iptables|visudo|ansible|ansible-[a-z]+|cscli|bsdtar|rmt|aptitude|dpkg|rpm|kubectl|docker|psql|mysql|sudo|strace|dmesg|lscpu|lsblk|nproc",
        r")\b",
    )
}

/// Request-framing checks that look at the header set rather than at a
/// value's content (id, paranoia level, severity, description); the core
/// runs them directly (`inspect.rs`).
pub const FRAMING_RULES: &[(u32, u8, Severity, &str)] = &[
    (
        10001,
        1,
        Severity::Critical,
        "request smuggling: both Content-Length and Transfer-Encoding",
    ),
    (
        10002,
        1,
        Severity::Critical,
        "request smuggling: a Transfer-Encoding other than `chunked`",
    ),
    (
        10003,
        1,
        Severity::Critical,
        "header injection: CR, LF or NUL in a header name or value",
    ),
    (
        10004,
        2,
        Severity::Warning,
        "more than one Content-Length or Host header",
    ),
];

/// The built-in rules at or below `paranoia`.
pub fn builtin(paranoia: u8) -> Vec<RuleSpec> {
    defs()
        .into_iter()
        .filter(|d| d.paranoia <= paranoia)
        .map(|d| RuleSpec {
            id: d.id,
            family: d.family.name().to_string(),
            paranoia: d.paranoia,
            score: d.severity.score(),
            targets: d.targets,
            transforms: d.transforms.to_vec(),
            pattern: if d.phrases.is_empty() {
                Pattern::Regex(d.regex.to_string())
            } else {
                Pattern::Phrases {
                    list: d.phrases.iter().map(|p| (*p).to_string()).collect(),
                    word: d.word,
                }
            },
            condition: d.condition,
            description: d.description.to_string(),
        })
        .collect()
}

/// Every built-in rule id with its family and paranoia level.
pub fn catalog() -> Vec<(u32, &'static str, u8)> {
    let mut all: Vec<(u32, &'static str, u8)> = defs()
        .iter()
        .map(|d| (d.id, d.family.name(), d.paranoia))
        .collect();
    all.extend(
        FRAMING_RULES
            .iter()
            .map(|(id, pl, _, _)| (*id, Family::Protocol.name(), *pl)),
    );
    all
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn ids_are_unique_and_in_their_family_range() {
        let mut seen = HashSet::new();
        for (id, family, pl) in catalog() {
            assert!(seen.insert(id), "duplicate id {id}");
            assert!((1..=4).contains(&pl));
            let range = match family {
                "protocol" => 10000..11000,
                "scanner" => 11000..12000,
                "lfi" => 20000..21000,
                "rfi" => 21000..22000,
                "rce" => 22000..23000,
                "php" => 23000..24000,
                "java" => 24000..25000,
                "template" => 25000..26000,
                "nosql" => 26000..27000,
                "ldap" => 28000..29000,
                "session" => 29000..30000,
                "xxe" => 27000..28000,
                "xss" => 30000..31000,
                "sqli" => 40000..41000,
                other => panic!("unknown family {other}"),
            };
            assert!(range.contains(&id), "{id} outside {family}");
        }
    }

    /// Every rule that matches `value` as a value of kind `target`, at
    /// paranoia 2 (conditions are the inspection's, not checked here).
    fn matching(set: &crate::engine::RuleSet, target: Targets, value: &str) -> Vec<u32> {
        struct All;
        impl crate::engine::RuleFilter for All {
            fn family_enabled(&self, _: &str) -> bool {
                true
            }
            fn rule_enabled(&self, _: &crate::engine::Rule) -> bool {
                true
            }
        }
        let mut out = Vec::new();
        set.scan(target, value, None, &All, &mut |r| {
            out.push(set.rules()[r].id)
        });
        out
    }

    /// The shapes each newer rule is for, and the near misses it must let
    /// pass (the broader sets are `tests/payloads.txt` and the corpora).
    #[test]
    fn attack_shapes_match_and_near_misses_do_not() {
        let set = crate::engine::RuleSet::compile(&builtin(2)).unwrap();
        let a = Targets::ARGS;
        #[rustfmt::skip]
        let cases: &[(u32, Targets, &str, bool)] = &[
            // CRLF / header injection, response splitting, smuggling.
            (10010, a, "en\r\nSet-Cookie: role=admin", true),
            (10010, a, "x\rX-Injected: 1", true),
            (10010, a, "x\r\n\r\nHTTP/1.1 200 OK", true),
            (10010, a, "x\u{560d}\u{560a}Location: https://evil.example/", true),
            (10010, a, "x%E5%98%8A%E5%98%8DLocation:%20https://evil.example/", true),
            (10010, a, "Meeting\nLocation: Berlin office\nHost: Jane Doe", false),
            (10011, a, "GET http://internal/ HTTP/1.1", true),
            (10011, a, "the GET request returns HTTP 200", false),
            (10014, Targets::ARG_NAMES, "a\r\nb", true),
            (10014, Targets::ARG_NAMES, "user[name]", false),
            // Mail header and command injection.
            (10020, a, "victim@example.com\nBcc: list@spam.example", true),
            (10020, a, "x\r\nRCPT TO:<a@spam.example>", true),
            (10020, a, "Forwarded\nFrom: Ana <ana@example.com>", false),
            (10020, a, "Please cc: my colleague", false),
            // LDAP filters.
            (28001, a, "*)(uid=*))(|(uid=*", true),
            (28001, a, "admin)(|", true),
            (28001, a, "Smith (John) (Jr.)", false),
            (28001, a, "f(x) = (x + 1)(x - 1)", false),
            // Session fixation: a cookie set from a value.
            (29001, a, "<meta http-equiv=Set-Cookie content=\"sid=1\">", true),
            (29001, a, "document.cookie=\"sid=1; expires=Fri\"", true),
            (29001, a, "the cookie expires tomorrow", false),
            (29002, Targets::ARG_NAMES, "PHPSESSID", true),
            (29002, Targets::ARG_NAMES, "session", false),
            // Template injection.
            (25001, a, "{{7*'7'}}", true),
            (25001, a, "{{ cycler.__init__.__globals__.os.popen('id') }}", true),
            (25001, a, "Hello {{ name }}, order {{ order.id }}", false),
            (25007, a, "@{[system 'id']}", true),
            (25007, a, "mail me @ {home} [soon]", false),
            // NoSQL and ORM operators.
            (26001, Targets::ARG_NAMES, "user[$ne]", true),
            (26001, Targets::ARG_NAMES, "$schema", false),
            (26003, Targets::ARG_NAMES, "user__profile__icontains", true),
            (26003, Targets::ARG_NAMES, "__init__", false),
            // Paranoia 2: whole-value SQL fragments.
            (40020, a, "COUNT(", true),
            (40020, a, "in (0,1)", true),
            (40020, a, "if (the weather holds) we go", false),
            (40021, a, "AND 2771=1709)", true),
            (40021, a, "And so it is decided", false),
            (40022, a, "IS NULL", true),
            (40022, a, "Order by date to see the newest", false),
            (40023, a, ") AS orders FROM", true),
            (40023, a, "x'|email--", true),
            (40023, a, "regexes 'sam' and 'samwise' match", false),
            (40024, a, "'admin', '1'='1'", true),
            (40024, a, "2 + 2 is four", false),
            // Paranoia 2: hidden addresses and off-site links.
            (21008, a, "http://2852039166/", true),
            (21008, a, "http://0xA9FEA9FE/", true),
            (21008, a, "https://example.com/orders/2852039166", false),
            (21009, a, "https://evil.example/x", true),
            (21009, a, "see https://docs.example.com", false),
            // Precision: prose and code that used to be refused.
            (22002, a, "Use `regex::bytes::Regex` to match bytes.", false),
            (22001, a, "The mask is inverted, like `umask` works.", false),
            (22001, a, "run `cat /etc/passwd` now", true),
            (20003, a, "a single exclamation mark in the field of /etc/shadow.", false),
            (20003, a, "/etc/passwd", true),
            (20003, a, "php://filter/resource=/etc/passwd", true),
            (23004, a, "See printf(3) and syslog(3).", false),
            (23004, a, "system('id')", true),
            (30004, a, "<a href=\"https://crates.io/crates/x\"><img src=\"badge.svg\"></a>", false),
            (30004, a, "<link rel=stylesheet href=//evil.example/x.css>", true),
            (40010, a, "(since dpkg 1.16.5) or any (since 1.16.2)", false),
            (40010, a, "1' or sleep(5)=0", true),
        ];
        for (id, target, value, expected) in cases {
            let got = matching(&set, *target, value).contains(id);
            assert_eq!(got, *expected, "rule {id} on {value:?}");
        }
    }

    #[test]
    fn every_paranoia_level_compiles_and_every_rule_has_literals() {
        for pl in 1..=4 {
            let set = crate::engine::RuleSet::compile(&builtin(pl)).unwrap();
            assert_eq!(set.unfiltered_count(), 0, "paranoia {pl}");
        }
    }
}
