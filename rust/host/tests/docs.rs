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
