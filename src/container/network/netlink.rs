//! A blocking netlink socket that sends requests and waits for their acknowledgements: all the
//! bridge mode needs (rtnetlink for links, addresses and routes; nfnetlink for nftables), with
//! no async runtime and no helper process.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;

use netlink_packet_core::{
    NetlinkDeserializable, NetlinkHeader, NetlinkMessage, NetlinkPayload, NetlinkSerializable,
    NLM_F_ACK, NLM_F_REQUEST,
};
use netlink_sys::{protocols, Socket, SocketAddr};

/// How long a request may wait for the kernel's answer before it is an error.
const REPLY_TIMEOUT_SECS: libc::time_t = 5;

/// One bound netlink socket; requests are numbered from 1.
pub struct Netlink {
    socket: Socket,
    sequence: u32,
}

impl Netlink {
    /// An rtnetlink socket in the caller's network namespace.
    pub fn route() -> io::Result<Netlink> {
        Netlink::open(protocols::NETLINK_ROUTE)
    }

    /// An rtnetlink socket in the network namespace `netns` (a `/proc/PID/ns/net` file).
    /// A netlink socket belongs to the namespace it was created in, so a short-lived thread
    /// joins `netns` just to create it; this process stays where it is.
    pub fn route_in(netns: &File) -> io::Result<Netlink> {
        let raw = netns.as_raw_fd();
        std::thread::scope(|scope| {
            scope
                .spawn(move || {
                    // SAFETY: setns(2) on this thread only, with a valid namespace fd.
                    if unsafe { libc::setns(raw, libc::CLONE_NEWNET) } != 0 {
                        return Err(io::Error::last_os_error());
                    }
                    Netlink::route()
                })
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("netns thread panicked")))
        })
    }

    /// An nfnetlink socket (nftables) in the caller's network namespace.
    pub fn netfilter() -> io::Result<Netlink> {
        Netlink::open(protocols::NETLINK_NETFILTER)
    }

    fn open(protocol: isize) -> io::Result<Netlink> {
        let mut socket = Socket::new(protocol)?;
        socket.bind(&SocketAddr::new(0, 0))?;
        let timeout = libc::timeval {
            tv_sec: REPLY_TIMEOUT_SECS,
            tv_usec: 0,
        };
        // SAFETY: setsockopt(2) with a valid fd and a timeval of the advertised size.
        let rc = unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                std::ptr::from_ref(&timeout).cast(),
                std::mem::size_of::<libc::timeval>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Netlink {
            socket,
            sequence: 0,
        })
    }

    /// Send one request (`flags` on top of REQUEST|ACK) and wait for its acknowledgement.
    pub fn request<T>(&mut self, payload: T, flags: u16) -> io::Result<()>
    where
        T: NetlinkSerializable + NetlinkDeserializable + std::fmt::Debug,
    {
        self.exchange(vec![(payload, flags | NLM_F_ACK)], |_| {})
    }

    /// Send one request and hand each answer message (not the final ack) to `on_reply`.
    pub fn query<T>(&mut self, payload: T, flags: u16, on_reply: impl FnMut(T)) -> io::Result<()>
    where
        T: NetlinkSerializable + NetlinkDeserializable + std::fmt::Debug,
    {
        self.exchange(vec![(payload, flags | NLM_F_ACK)], on_reply)
    }

    /// Send `messages` in one datagram (an nftables batch is one), then wait until every
    /// message sent with NLM_F_ACK is answered; the first error the kernel reports wins.
    pub fn exchange<T>(
        &mut self,
        messages: Vec<(T, u16)>,
        mut on_reply: impl FnMut(T),
    ) -> io::Result<()>
    where
        T: NetlinkSerializable + NetlinkDeserializable + std::fmt::Debug,
    {
        let mut pending = Vec::new();
        let mut datagram = Vec::new();
        for (payload, flags) in messages {
            self.sequence = self.sequence.wrapping_add(1);
            let mut message = NetlinkMessage::new(
                NetlinkHeader::default(),
                NetlinkPayload::InnerMessage(payload),
            );
            message.header.flags = NLM_F_REQUEST | flags;
            message.header.sequence_number = self.sequence;
            message.finalize();
            let start = datagram.len();
            datagram.resize(start + message.buffer_len(), 0);
            message.serialize(&mut datagram[start..]);
            if flags & NLM_F_ACK != 0 {
                pending.push(self.sequence);
            }
        }
        self.socket.send(&datagram, 0)?;
        let mut first_error = None;
        while !pending.is_empty() {
            let (buffer, _) = self.socket.recv_from_full()?;
            let mut offset = 0;
            while offset < buffer.len() {
                let message = NetlinkMessage::<T>::deserialize(&buffer[offset..])
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
                let length = message.header.length as usize;
                let sequence = message.header.sequence_number;
                match message.payload {
                    NetlinkPayload::Error(error) => {
                        pending.retain(|s| *s != sequence);
                        if error.code.is_some() && first_error.is_none() {
                            first_error = Some(error.to_io());
                        }
                    }
                    NetlinkPayload::Done(_) => pending.retain(|s| *s != sequence),
                    NetlinkPayload::InnerMessage(inner) => on_reply(inner),
                    _ => {}
                }
                if length == 0 {
                    break;
                }
                offset += (length + 3) & !3;
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}
