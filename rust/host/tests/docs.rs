// SPDX-License-Identifier: GPL-2.0

//! The documentation tables agree with the code.

use kmcl_protocol::status::TABLE;

fn errno_name(errno: i32) -> &'static str {
    match -errno {
        0 => "0",
        2 => "-ENOENT",
        5 => "-EIO",
        11 => "-EAGAIN",
        12 => "-ENOMEM",
        16 => "-EBUSY",
        19 => "-ENODEV",
        22 => "-EINVAL",
        71 => "-EPROTO",
        75 => "-EOVERFLOW",
        93 => "-EPROTONOSUPPORT",
        95 => "-EOPNOTSUPP",
        105 => "-ENOBUFS",
        107 => "-ENOTCONN",
        110 => "-ETIMEDOUT",
        115 => "-EINPROGRESS",
        125 => "-ECANCELED",
        _ => panic!("errno {errno} has no name here"),
    }
}

#[test]
fn status_page_lists_every_row() {
    let doc = include_str!("../../../Documentation/status.rst");
    let rows: Vec<Vec<&str>> = doc
        .lines()
        .filter(|l| l.starts_with("STATUS_"))
        .map(|l| l.split_whitespace().take(3).collect())
        .collect();
    assert_eq!(rows.len(), TABLE.len(), "row count differs from TABLE");
    for (status, nt, errno) in TABLE {
        let hex = format!("0x{nt:08X}");
        let row = rows
            .iter()
            .find(|r| r[1] == hex)
            .unwrap_or_else(|| panic!("{status:?} ({hex}) missing from status.rst"));
        assert_eq!(row[2], errno_name(errno), "{status:?}: errno differs");
    }
}

/// Every function, callback and structure of KMCL's header
/// (vmbuskernelmodeclientlibapi.h), as listed in the project's seed
/// document.
const KMCL_NAMES: &[&str] = &[
    "EvtChannelPnpFailure",
    "EvtVmbChannelClosed",
    "EvtVmbChannelOpened",
    "EvtVmbChannelPostStarted",
    "EvtVmbChannelProcessPacket",
    "EvtVmbChannelProcessingComplete",
    "EvtVmbChannelRestorePacket",
    "EvtVmbChannelSavePacket",
    "EvtVmbChannelStarted",
    "EvtVmbChannelSuspend",
    "EvtVmbPacketCompletionRoutine",
    "KMCL_CLIENT_INTERFACE_V1",
    "KMCL_SERVER_ONLY_METHODS",
    "VMB_CHANNEL_STATE_CHANGE_CALLBACKS",
    "VMB_CHANNEL_STATE_CHANGE_CALLBACKS_INIT",
    "VmbChannelAllocate",
    "VmbChannelCleanup",
    "VmbChannelCreateGpadlFromBuffer",
    "VmbChannelCreateGpadlFromMdl",
    "VmbChannelDeleteGpadl",
    "VmbChannelDisable",
    "VmbChannelEnable",
    "VmbChannelGetInterfaceInstance",
    "VmbChannelGetMmioSpace",
    "VmbChannelGetPointer",
    "VmbChannelInitSetClientContextSize",
    "VmbChannelInitSetFlags",
    "VmbChannelInitSetFriendlyName",
    "VmbChannelInitSetMaximumExternalData",
    "VmbChannelInitSetMaximumPacketSize",
    "VmbChannelInitSetProcessPacketCallbacks",
    "VmbChannelInitSetStateChangeCallbacks",
    "VmbChannelMapGpadl",
    "VmbChannelPacketComplete",
    "VmbChannelPacketDeferToPassive",
    "VmbChannelPacketFail",
    "VmbChannelPacketGetExternalData",
    "VmbChannelPause",
    "VmbChannelRestoreFromBuffer",
    "VmbChannelSaveBegin",
    "VmbChannelSaveContinue",
    "VmbChannelSaveEnd",
    "VmbChannelSendSynchronousRequest",
    "VmbChannelSetIncomingProcessingAtPassive",
    "VmbChannelSetPointer",
    "VmbChannelSetTransactionQuota",
    "VmbChannelSizeofPacket",
    "VmbChannelStart",
    "VmbChannelUnmapGpadl",
    "VmbClientChannelInitSetRingBufferPageCount",
    "VmbClientChannelInitSetTargetPnp",
    "VmbConvertVmbusHandleToKernelHandle",
    "VmbPacketAllocate",
    "VmbPacketFree",
    "VmbPacketGetChannel",
    "VmbPacketGetPointer",
    "VmbPacketInitialize",
    "VmbPacketRestore",
    "VmbPacketSend",
    "VmbPacketSendWithExternalMdl",
    "VmbPacketSendWithExternalPfns",
    "VmbPacketSetCompletionRoutine",
    "VmbPacketSetPointer",
    "VmbServerChannelInitSetFlags",
    "VmbServerChannelInitSetMmioMegabytes",
    "VmbServerChannelInitSetSaveRestorePacketCallbacks",
    "VmbServerChannelInitSetTargetInterfaceId",
    "VmbServerChannelInitSetTargetVtl",
    "VmbServerChannelInitSetVmbusHandle",
    // Named by the seed only by its description ("outgoing monitor
    // latency for MNF interrupts").
    "VmbChannelSetInterruptLatency",
];

#[test]
fn mapping_table_has_a_row_for_every_kmcl_name() {
    let doc = include_str!("../../../Documentation/kmcl-mapping.rst");
    let missing: Vec<&str> = KMCL_NAMES
        .iter()
        .copied()
        .filter(|n| !doc.lines().any(|l| l.split_whitespace().next() == Some(n)))
        .collect();
    assert!(
        missing.is_empty(),
        "no row in kmcl-mapping.rst for: {missing:?}"
    );
}

/// The Rust wrapper's sources, concatenated.
fn wrapper_sources() -> String {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../include/kmcl/rust");
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .expect("include/kmcl/rust")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "rs"))
        .collect();
    names.sort();
    names
        .iter()
        .map(|p| std::fs::read_to_string(p).expect("readable"))
        .collect()
}

/// Searching the rustdoc for a KMCL name finds its Rust item: each name
/// is a `#[doc(alias)]` of some item of the wrapper.
#[test]
fn every_kmcl_name_is_a_rustdoc_alias_of_the_wrapper() {
    let src = wrapper_sources();
    let missing: Vec<&str> = KMCL_NAMES
        .iter()
        .copied()
        .filter(|n| !src.contains(&format!("#[doc(alias = \"{n}\")]")))
        .collect();
    assert!(
        missing.is_empty(),
        "no #[doc(alias)] in include/kmcl/rust/ for: {missing:?}"
    );
}

/// The header with comments removed and whitespace collapsed.
fn header() -> String {
    let src = include_str!("../../../include/kmcl/kmcl.h");
    let mut out = String::new();
    let mut rest = src;
    while let Some(start) = rest.find("/*") {
        out.push_str(&rest[..start]);
        rest = rest[start..]
            .split_once("*/")
            .map_or("", |(_, after)| after);
    }
    out.push_str(rest);
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Names of the functions the header declares (`kmcl_x(`), excluding the
/// static inline helper and function-pointer typedefs.
fn header_functions() -> Vec<String> {
    let h = header();
    let mut names: Vec<String> = h
        .split(';')
        .filter(|decl| !decl.contains("typedef") && !decl.contains("static inline"))
        .filter_map(|decl| {
            let open = decl.find('(')?;
            let name = decl[..open].rsplit([' ', '*']).next()?;
            name.starts_with("kmcl_").then(|| name.to_string())
        })
        .collect();
    names.sort();
    names.dedup();
    names
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

#[test]
fn header_exports_and_rust_abi_name_the_same_functions() {
    let exports = sorted(
        include_str!("../../glue/exports.c")
            .lines()
            .filter_map(|l| l.strip_prefix("EXPORT_SYMBOL_NS_GPL("))
            .map(|l| l.split(',').next().unwrap().to_string())
            .collect(),
    );
    let abi = sorted(
        include_str!("../../../include/kmcl/rust/abi.rs")
            .split_whitespace()
            .filter(|w| w.starts_with("kmcl_") && w.contains('('))
            .map(|w| w.split('(').next().unwrap().to_string())
            .collect(),
    );
    let declared = header_functions();
    // KMCL's 55 functions, the interface query, KMCL's target processor
    // and packet client context (from later interface versions) and
    // kmcl's own: the transport choice, creating/destroying loopback
    // buses, the restored packet's handle, the stash, the four
    // transfer-page calls, page-buffer sends, KMCL V5's primary channel,
    // kmcl's sub-channel callback and index, and posting a packet without
    // a packet object.
    assert_eq!(declared.len(), 74, "header: {declared:?}");
    assert_eq!(exports, declared, "exports.c vs kmcl.h");
    assert_eq!(abi, declared, "abi.rs vs kmcl.h");
}

#[test]
fn mapping_signatures_are_the_headers_and_cover_every_function() {
    let doc = include_str!("../../../Documentation/kmcl-mapping.rst");
    let h = header();
    let sigs: Vec<&str> = doc
        .lines()
        .filter_map(|l| l.trim().strip_prefix(":C: ``"))
        .filter_map(|l| l.strip_suffix("``"))
        .filter(|s| s.contains('('))
        .collect();
    for sig in &sigs {
        assert!(
            h.contains(&format!("{sig};")) || h.contains(&format!("{sig} {{")),
            "kmcl-mapping.rst signature is not the header's: {sig}"
        );
    }
    for f in header_functions() {
        assert!(
            sigs.iter()
                .any(|s| s.contains(&format!(" {f}(")) || s.contains(&format!("*{f}("))),
            "{f} is declared in kmcl.h but has no entry in kmcl-mapping.rst"
        );
    }
}

/// The rows of a reST list-table whose first two columns are
/// ``name`` and ``kind``.
fn design_lock_rows(doc: &str) -> Vec<(String, String)> {
    let lines: Vec<&str> = doc.lines().collect();
    let mut rows = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        let Some(name) = l.trim().strip_prefix("* - ``") else {
            continue;
        };
        let Some(kind) = lines.get(i + 1).and_then(|k| k.trim().strip_prefix("- ``")) else {
            continue;
        };
        rows.push((
            name.trim_end_matches("``").to_string(),
            kind.trim_end_matches("``").to_string(),
        ));
    }
    rows
}

#[test]
fn design_lock_table_is_the_channels() {
    let code = include_str!("../../engine/channel/mod.rs");
    let doc = include_str!("../../../Documentation/design.rst");
    // The module documentation's table: "//! | `name` | `Kind` ... |".
    let table: Vec<(String, String)> = code
        .lines()
        .filter_map(|l| {
            let l = l.strip_prefix("//! | `")?;
            let (name, rest) = l.split_once("` | `")?;
            let kind = rest.split('`').next()?;
            Some((name.to_string(), kind.to_string()))
        })
        .collect();
    assert!(table.len() >= 8, "lock table not found in channel/mod.rs");
    assert_eq!(design_lock_rows(doc), table, "design.rst vs channel/mod.rs");
    // Every lock field of Channel is in the table, and every row names a
    // field.
    let body = code
        .split("struct Channel {")
        .nth(1)
        .and_then(|b| b.split("\n}\n").next())
        .expect("struct Channel");
    let fields: Vec<(&str, &str)> = body
        .lines()
        .filter_map(|l| l.trim().split_once(": "))
        .filter(|(n, _)| !n.starts_with("//") && !n.starts_with('#'))
        .collect();
    for (name, ty) in &fields {
        let is_lock = ["Mutex<", "SpinLock<", "SpinLockIrq<"]
            .iter()
            .any(|k| ty.starts_with(k));
        if is_lock {
            assert!(
                table.iter().any(|(n, _)| n == name),
                "lock `{name}` of Channel is not in the lock table"
            );
        }
    }
    for (name, _) in &table {
        assert!(
            fields.iter().any(|(n, _)| n == name),
            "the lock table names `{name}`, which is not a field of Channel"
        );
    }
}

/// A file of kmcl's tree, relative to its top directory.
fn tree_file(path: &str) -> String {
    let top = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
    std::fs::read_to_string(format!("{top}/{path}")).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// README and every page of Documentation/.
fn prose() -> Vec<(String, String)> {
    let top = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
    let mut out = vec![("README".to_string(), tree_file("README"))];
    for entry in std::fs::read_dir(format!("{top}/Documentation")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "rst") {
            let name = format!(
                "Documentation/{}",
                path.file_name().unwrap().to_string_lossy()
            );
            out.push((name, std::fs::read_to_string(&path).unwrap()));
        }
    }
    out
}

/// The word before each occurrence of `phrase` in `text` (whitespace
/// collapsed, so a phrase may span a line break).
fn words_before(text: &str, phrase: &str) -> Vec<String> {
    let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut out = Vec::new();
    let mut rest = flat.as_str();
    while let Some(at) = rest.find(phrase) {
        let word = rest[..at].trim_end().rsplit(' ').next().unwrap_or("");
        out.push(
            word.trim_matches(|c: char| !c.is_alphanumeric())
                .to_lowercase(),
        );
        rest = &rest[at + phrase.len()..];
    }
    out
}

fn number_word(n: usize) -> String {
    const WORDS: [&str; 13] = [
        "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
        "eleven", "twelve",
    ];
    WORDS.get(n).map_or(n.to_string(), |w| w.to_string())
}

/// Every count README and Documentation/ give of the project's parts is the
/// tree's: "<N> fuzz targets", "<N> exported functions", "<N> kselftest
/// programs" (N in digits or words).
#[test]
fn project_counts_in_the_docs_are_the_trees() {
    let top = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
    let fuzz_targets = std::fs::read_dir(format!("{top}/rust/host/fuzz/fuzz_targets"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "rs")
        })
        .count();
    let exported = tree_file("rust/glue/exports.c")
        .lines()
        .filter(|l| l.starts_with("EXPORT_SYMBOL_NS_GPL("))
        .count();
    let makefile = tree_file("tests/kselftest/kmcl/Makefile").replace("\\\n", " ");
    let programs = makefile
        .lines()
        .find_map(|l| l.strip_prefix("TEST_PROGS :="))
        .expect("TEST_PROGS in the kselftest Makefile")
        .split_whitespace()
        .count();
    for (phrase, n) in [
        (" fuzz targets", fuzz_targets),
        (" exported functions", exported),
        (" kselftest programs", programs),
    ] {
        let mut seen = 0;
        for (file, text) in prose() {
            for word in words_before(&text, phrase) {
                let is_count =
                    word.parse::<usize>().is_ok() || (0..13).any(|i| number_word(i) == word);
                if !is_count {
                    continue;
                }
                seen += 1;
                assert!(
                    word == n.to_string() || word == number_word(n),
                    "{file}: \"{word}{phrase}\", but the tree has {n}"
                );
            }
        }
        assert!(seen > 0, "no \"N{phrase}\" in README or Documentation/");
    }
}

/// dkms.conf's PACKAGE_VERSION is kmcl.ko's MODULE_VERSION, and the paths
/// the documentation gives for a DKMS install name that version.
#[test]
fn dkms_version_is_the_modules() {
    let dkms = tree_file("dkms.conf");
    let version = dkms
        .lines()
        .find_map(|l| l.strip_prefix("PACKAGE_VERSION=\""))
        .and_then(|v| v.strip_suffix('"'))
        .expect("PACKAGE_VERSION in dkms.conf");
    assert!(
        tree_file("rust/glue/exports.c").contains(&format!("MODULE_VERSION(\"{version}\");")),
        "MODULE_VERSION in rust/glue/exports.c is not dkms.conf's {version}"
    );
    let building = tree_file("Documentation/building.rst");
    for path in [
        "/usr/src/kmcl-",
        "/var/lib/dkms/kmcl/",
        "dkms install kmcl/",
    ] {
        for (i, _) in building.match_indices(path) {
            let rest = &building[i + path.len()..];
            assert!(
                rest.starts_with(version),
                "building.rst: {path}{} is not {version}",
                &rest[..8]
            );
        }
    }
}

/// The times README states agree with the measured ones in
/// Documentation/testing.rst and with what the scripts print.
#[test]
fn stated_times_agree() {
    let testing = tree_file("Documentation/testing.rst");
    let readme = tree_file("README");
    let flat = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
    let after = |text: &str, marker: &str| -> String {
        let t = flat(text);
        let at = t.find(marker).unwrap_or_else(|| panic!("no \"{marker}\""));
        t[at + marker.len()..]
            .split([',', ';', '('])
            .next()
            .unwrap()
            .trim()
            .to_string()
    };
    // README: "warm `make check` takes <time> (measured ..."; testing.rst:
    // "- warm (nothing changed since the last run): <time>, ...".
    let warm_readme = after(&readme, "warm `make check` takes");
    let warm_testing = after(&testing, "warm (nothing changed since the last run):");
    assert_eq!(
        warm_readme, warm_testing,
        "warm make check: README vs testing.rst"
    );
    // The kernel build: README, testing.rst, kernel.sh and bench.sh.
    // README: "into ~/.cache/kmcl (<time> on 2 cores)".
    let kernel = flat(&readme)
        .split_once("into ~/.cache/kmcl (")
        .and_then(|(_, rest)| rest.split_once(" on 2 cores)"))
        .map(|(time, _)| time.to_string())
        .expect("README: the kernel build time");
    assert!(
        kernel.starts_with("about ") && kernel.ends_with(" minutes"),
        "{kernel}"
    );
    for file in [
        "Documentation/testing.rst",
        "scripts/kernel.sh",
        "scripts/bench.sh",
    ] {
        assert!(
            flat(&tree_file(file)).contains(&format!("{kernel} on 2 cores")),
            "{file} does not say the kernel builds in {kernel} on 2 cores"
        );
    }
    assert!(!warm_readme.is_empty() && warm_readme.chars().next().unwrap().is_ascii_digit());
}
