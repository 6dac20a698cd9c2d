//! The buffer a transform writes its outputs into.

use crate::Output;

/// Collects the outputs written for one input record, in order.
///
/// A plain buffer: native tests create one with `Writer::default()` and inspect
/// [`outputs`](Writer::outputs) afterwards. Outputs are kept only if the transform returns `Ok`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Writer {
    outputs: Vec<Output>,
}

impl Writer {
    /// An empty writer.
    pub fn new() -> Self {
        Self::default()
    }

    /// Writes one output (a [`Message`](crate::Message) converts into one unchanged).
    pub fn write(&mut self, output: impl Into<Output>) {
        self.outputs.push(output.into());
    }

    /// Writes one output routed to `topic`.
    pub fn write_to(&mut self, topic: impl Into<String>, output: impl Into<Output>) {
        self.outputs.push(output.into().to_topic(topic));
    }

    /// How many outputs were written.
    pub fn len(&self) -> usize {
        self.outputs.len()
    }

    /// Whether nothing was written.
    pub fn is_empty(&self) -> bool {
        self.outputs.is_empty()
    }

    /// The outputs written so far, in order.
    pub fn outputs(&self) -> &[Output] {
        &self.outputs
    }

    /// Takes the outputs written so far, leaving the writer empty for the next record (its
    /// allocation kept).
    pub(crate) fn drain(&mut self) -> std::vec::Drain<'_, Output> {
        self.outputs.drain(..)
    }

    /// The outputs written, in order.
    pub fn into_outputs(self) -> Vec<Output> {
        self.outputs
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Message;

    #[test]
    fn keeps_outputs_in_write_order() {
        let mut writer = Writer::default();
        assert!(writer.is_empty());
        writer.write(Output::new().with_value("first"));
        writer.write_to("audit", Message::from_value("second"));
        assert_eq!(writer.len(), 2);
        assert_eq!(writer.outputs()[0].value(), Some(&b"first"[..]));
        assert_eq!(writer.outputs()[0].topic(), None);
        assert_eq!(writer.outputs()[1].topic(), Some("audit"));
        let outputs = writer.into_outputs();
        assert_eq!(outputs[1].value(), Some(&b"second"[..]));
    }
}
