//! `Routes`: which signaling route reaches each peer. A peer can be heard
//! on both: a tab of this browser that also holds a socket to the server.
//! The BroadcastChannel is preferred (no server, no round trip); a peer has
//! left only once it is gone from every route.

use crate::protocol::sorted_map::SortedMap;

use crate::protocol::clock::PeerId;

/// A way to signal a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Route {
    /// The BroadcastChannel between tabs of one browser.
    Tabs,
    /// The WebSocket to `cpc-signal`.
    Server,
}

#[derive(Debug, Clone, Copy, Default)]
struct Heard {
    tabs: bool,
    server: bool,
}

impl Heard {
    fn on(&mut self, route: Route) -> &mut bool {
        match route {
            Route::Tabs => &mut self.tabs,
            Route::Server => &mut self.server,
        }
    }
}

/// The routes each known peer was heard on.
#[derive(Debug, Default)]
pub struct Routes {
    peers: SortedMap<PeerId, Heard>,
}

impl Routes {
    /// `peer` is present on `route`.
    pub fn heard(&mut self, peer: PeerId, route: Route) {
        *self
            .peers
            .get_or_insert_with(peer, Heard::default)
            .on(route) = true;
    }

    /// `peer` left `route`; `true` when that was its last.
    pub fn left(&mut self, peer: PeerId, route: Route) -> bool {
        let Some(heard) = self.peers.get_mut(&peer) else {
            return false;
        };
        *heard.on(route) = false;
        if heard.tabs || heard.server {
            return false;
        }
        self.peers.remove(&peer);
        true
    }

    /// The route to signal `peer` on: tabs when it is a tab of ours.
    pub fn route(&self, peer: PeerId) -> Option<Route> {
        let heard = self.peers.get(&peer)?;
        if heard.tabs {
            Some(Route::Tabs)
        } else if heard.server {
            Some(Route::Server)
        } else {
            None
        }
    }

    pub fn knows(&self, peer: PeerId) -> bool {
        self.peers.contains_key(&peer)
    }

    /// The peers heard on `route`.
    pub fn on(&self, route: Route) -> impl Iterator<Item = PeerId> + '_ {
        self.peers.iter().filter_map(move |(peer, heard)| {
            let on = match route {
                Route::Tabs => heard.tabs,
                Route::Server => heard.server,
            };
            on.then_some(*peer)
        })
    }

    pub fn clear(&mut self) {
        self.peers.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: PeerId = PeerId(7);

    #[test]
    fn a_peer_heard_on_both_routes_is_signaled_over_tabs() {
        let mut r = Routes::default();
        r.heard(P, Route::Server);
        assert_eq!(r.route(P), Some(Route::Server));
        r.heard(P, Route::Tabs);
        assert_eq!(
            r.route(P),
            Some(Route::Tabs),
            "tabs win, whatever the order"
        );
        assert!(!r.left(P, Route::Server), "still a tab of ours");
        assert_eq!(r.route(P), Some(Route::Tabs));
        r.heard(P, Route::Server);
        assert!(!r.left(P, Route::Tabs));
        assert_eq!(r.route(P), Some(Route::Server), "back to the server");
        assert!(r.left(P, Route::Server), "gone from both");
        assert_eq!(r.route(P), None);
        assert!(!r.left(P, Route::Server), "leaving twice is nothing");
    }

    #[test]
    fn peers_on_a_route() {
        let mut r = Routes::default();
        r.heard(PeerId(1), Route::Tabs);
        r.heard(PeerId(2), Route::Server);
        r.heard(PeerId(3), Route::Tabs);
        r.heard(PeerId(3), Route::Server);
        let server: Vec<_> = r.on(Route::Server).collect();
        assert_eq!(server, [PeerId(2), PeerId(3)]);
    }
}
