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
    // (from a later interface version) and kmcl's own: the transport
    // choice, creating/destroying loopback buses, the restored packet's
    // handle and the stash.
    assert_eq!(declared.len(), 63, "header: {declared:?}");
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
