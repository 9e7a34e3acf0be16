//! A peer for tests that takes a node's requests and answers only when told.
//!
//! Owns only a raw swarm on 127.0.0.1 that dials a node, reports each
//! one-way message and fetch it receives, and holds them unanswered (so they
//! stay outstanding at the node) until [`SilentPeer::answer_all`]; must not
//! be used outside `#[cfg(test)]`.

use std::time::Duration;

use futures::StreamExt;
use libp2p::{
    identity::Keypair,
    request_response::{self, ResponseChannel},
    swarm::{dial_opts::DialOpts, SwarmEvent},
    Multiaddr, PeerId, Swarm,
};
use tokio::{sync::mpsc, task::JoinHandle, time::timeout};

use super::behaviour::{self, Behaviour, BehaviourEvent};
use super::tests::config;
use super::Net;

/// A request the peer received: which protocol, and its bytes.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Received {
    Message(Vec<u8>),
    Fetch(Vec<u8>),
}

pub(crate) struct SilentPeer {
    pub(crate) id: PeerId,
    received: mpsc::UnboundedReceiver<Received>,
    answer: mpsc::UnboundedSender<()>,
    task: JoinHandle<()>,
}

impl SilentPeer {
    /// Dials the node at `addr` and returns once connected.
    pub(crate) async fn start(addr: Multiaddr) -> SilentPeer {
        let cfg = config(
            Keypair::generate_ed25519(),
            "/ip4/127.0.0.1/tcp/0",
            vec![],
            None,
        );
        let mut swarm = behaviour::build_swarm(&cfg).expect("swarm builds");
        let id = *swarm.local_peer_id();
        swarm
            .dial(DialOpts::unknown_peer_id().address(addr).build())
            .expect("dial starts");
        timeout(Duration::from_secs(20), async {
            loop {
                if let SwarmEvent::ConnectionEstablished { .. } = swarm.select_next_some().await {
                    return;
                }
            }
        })
        .await
        .expect("the silent peer connects");
        let (received_tx, received) = mpsc::unbounded_channel();
        let (answer, answer_rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(serve(swarm, received_tx, answer_rx));
        SilentPeer {
            id,
            received,
            answer,
            task,
        }
    }

    /// The next request received, if one comes within `within`.
    pub(crate) async fn next(&mut self, within: Duration) -> Option<Received> {
        timeout(within, self.received.recv()).await.ok().flatten()
    }

    /// Starts `n` fetches from `net` to this peer, which holds them
    /// unanswered, and returns once it has received them all.
    pub(crate) async fn hold_fetches(&mut self, net: &Net, n: usize) {
        for i in 0..n {
            let (net, to) = (net.clone(), self.id);
            tokio::spawn(async move { net.fetch(to, format!("held #{i}").into_bytes()).await });
        }
        for _ in 0..n {
            let got = self.next(Duration::from_secs(30)).await;
            assert!(matches!(got, Some(Received::Fetch(_))), "got {got:?}");
        }
    }

    /// Answers every request held and, from now on, each as it comes.
    pub(crate) fn answer_all(&self) {
        let _ = self.answer.send(());
    }
}

impl Drop for SilentPeer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

enum Held {
    Message(ResponseChannel<Vec<u8>>),
    Fetch(ResponseChannel<Vec<u8>>),
}

fn respond(swarm: &mut Swarm<Behaviour>, held: Held) {
    let _ = match held {
        Held::Message(channel) => swarm.behaviour_mut().msg.send_response(channel, Vec::new()),
        Held::Fetch(channel) => swarm
            .behaviour_mut()
            .fetch
            .send_response(channel, Vec::new()),
    };
}

async fn serve(
    mut swarm: Swarm<Behaviour>,
    received: mpsc::UnboundedSender<Received>,
    mut answer: mpsc::UnboundedReceiver<()>,
) {
    let mut held = Vec::new();
    let mut answering = false;
    loop {
        tokio::select! {
            event = swarm.select_next_some() => {
                let (got, channel) = match event {
                    SwarmEvent::Behaviour(BehaviourEvent::Msg(request_response::Event::Message {
                        message: request_response::Message::Request { request, channel, .. },
                        ..
                    })) => (Received::Message(request), Held::Message(channel)),
                    SwarmEvent::Behaviour(BehaviourEvent::Fetch(request_response::Event::Message {
                        message: request_response::Message::Request { request, channel, .. },
                        ..
                    })) => (Received::Fetch(request), Held::Fetch(channel)),
                    _ => continue,
                };
                let _ = received.send(got);
                if answering {
                    respond(&mut swarm, channel);
                } else {
                    held.push(channel);
                }
            }
            Some(()) = answer.recv() => {
                answering = true;
                for channel in held.drain(..) {
                    respond(&mut swarm, channel);
                }
            }
        }
    }
}
