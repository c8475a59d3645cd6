//! `Traced<M>`: an actor message together with the tracing span of the flow it belongs to, so that
//! work done by the receiving actor nests under the sender's span (one trace per device onboarding).

use actix::Message;
use tracing::Span;

/// A message carrying the span that was current when it was sent.
#[derive(Debug)]
pub struct Traced<M> {
    /// The sender's span; the handler runs its work inside it.
    pub span: Span,
    /// The message itself.
    pub msg: M,
}

impl<M: Message> Message for Traced<M> {
    type Result = M::Result;
}

/// Wrap any message with the current span: `addr.send(msg.traced())`.
pub trait TracedExt: Sized {
    /// The message with `Span::current()`.
    fn traced(self) -> Traced<Self> {
        Traced {
            span: Span::current(),
            msg: self,
        }
    }

    /// The message with a given span.
    fn in_span(self, span: Span) -> Traced<Self> {
        Traced { span, msg: self }
    }
}

impl<M: Message> TracedExt for M {}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Message)]
    #[rtype(result = "()")]
    struct Ping;

    #[test]
    fn traced_carries_the_current_span() {
        let span = tracing::info_span!("flow");
        let t = span.in_scope(|| Ping.traced());
        assert_eq!(t.span.id(), span.id());
    }
}
