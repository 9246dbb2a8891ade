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
