//! Link delay with `tc netem` on both ends of a link. Pure: the `tc` arguments. (Loss is done
//! by the censor's nftables rules, [`super::Censor::lose`], which every kernel with nftables
//! has; netem is a kernel option some kernels leave out.)

use std::time::Duration;

/// `tc` arguments that delay every packet sent out of `interface` by `delay` (replacing what
/// is there). The queue limit is raised so a long delay at speed does not itself drop packets.
pub fn delay_args(interface: &str, delay: Duration) -> Vec<String> {
    vec![
        "qdisc".into(),
        "replace".into(),
        "dev".into(),
        interface.into(),
        "root".into(),
        "netem".into(),
        "limit".into(),
        "100000".into(),
        "delay".into(),
        format!("{}us", delay.as_micros()),
    ]
}

/// `tc` arguments that remove any delay from `interface`.
pub fn clear_args(interface: &str) -> Vec<String> {
    ["qdisc", "del", "dev", interface, "root"]
        .iter()
        .map(|s| (*s).to_owned())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tc_arguments() {
        assert_eq!(
            delay_args("to-client", Duration::from_millis(100)).join(" "),
            "qdisc replace dev to-client root netem limit 100000 delay 100000us"
        );
        assert_eq!(
            clear_args("to-servers").join(" "),
            "qdisc del dev to-servers root"
        );
    }
}
