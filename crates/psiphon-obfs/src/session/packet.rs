//! The fixed start of an SSH binary packet (RFC 4253 section 6), as far as the obfuscation layer
//! needs it: `u32 packet_length ‖ u8 padding_length ‖ payload ‖ padding`, no MAC before NEWKEYS.

/// Message type that ends obfuscation in each direction.
pub const SSH_MSG_NEWKEYS: u8 = 21;
/// OpenSSH's largest packet; anything longer is not SSH.
pub const MAX_PACKET_LEN: u32 = 256 * 1024;

/// A validated packet header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PacketHeader {
    /// Bytes after the length field (padding length byte, payload, padding).
    pub(crate) packet_len: u32,
    /// Padding bytes at the end.
    pub(crate) padding_len: u8,
}

impl PacketHeader {
    /// Length field plus padding length byte.
    pub(crate) const LEN: usize = 5;

    /// Parses and checks the first five bytes of a packet.
    pub(crate) fn parse(bytes: &[u8]) -> Result<Self, &'static str> {
        let [a, b, c, d, padding_len, ..] = *bytes else {
            return Err("SSH packet header (too short)");
        };
        let packet_len = u32::from_be_bytes([a, b, c, d]);
        if !(1..=MAX_PACKET_LEN).contains(&packet_len) {
            return Err("SSH packet length");
        }
        if u32::from(padding_len) >= packet_len {
            return Err("SSH packet padding length");
        }
        Ok(Self {
            packet_len,
            padding_len,
        })
    }

    /// Length of the whole packet on the wire: the length field plus `packet_len`.
    pub(crate) fn wire_len(&self) -> usize {
        // packet_len is at most 256 KiB, so this fits any usize of 32 bits or more.
        usize::try_from(self.packet_len)
            .unwrap_or(usize::MAX)
            .saturating_add(4)
    }

    /// The message type (first payload byte), if the payload is not empty.
    pub(crate) fn message_type(&self, packet: &[u8]) -> Option<u8> {
        let payload_len = self
            .packet_len
            .checked_sub(1 + u32::from(self.padding_len))?;
        if payload_len == 0 {
            return None;
        }
        packet.get(Self::LEN).copied()
    }

    /// Rewrites both length fields of `packet`; `None` if it is shorter than a header.
    pub(crate) fn patch(packet: &mut [u8], packet_len: u32, padding_len: u8) -> Option<()> {
        let header = packet.get_mut(..Self::LEN)?;
        let (len, pad) = header.split_at_mut(4);
        len.copy_from_slice(&packet_len.to_be_bytes());
        *pad.first_mut()? = padding_len;
        Some(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_checks_lengths() {
        assert!(PacketHeader::parse(&[0, 0, 0, 12, 10]).is_ok());
        assert_eq!(
            PacketHeader::parse(&[0, 0, 0, 0, 0]),
            Err("SSH packet length")
        );
        assert_eq!(
            PacketHeader::parse(&[0, 4, 0, 1, 0]),
            Err("SSH packet length")
        );
        assert!(PacketHeader::parse(&[0, 4, 0, 0, 0]).is_ok());
        assert_eq!(
            PacketHeader::parse(&[0, 0, 0, 4, 4]),
            Err("SSH packet padding length")
        );
        assert!(PacketHeader::parse(&[0, 0, 0]).is_err());
    }

    #[test]
    fn message_type_needs_a_payload() {
        let h = PacketHeader::parse(&[0, 0, 0, 5, 4]).unwrap();
        assert_eq!(h.message_type(&[0, 0, 0, 5, 4, 9, 9, 9, 9]), None);
        let h = PacketHeader::parse(&[0, 0, 0, 12, 10]).unwrap();
        assert_eq!(h.message_type(&[0, 0, 0, 12, 10, 21]), Some(21));
    }
}
