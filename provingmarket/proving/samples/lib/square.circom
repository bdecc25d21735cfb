pragma circom 2.0.0;

// Square: "I know x with x * x = y".
// Public inputs, in order: prover (the address of whoever submits the proof), y.
// The prover's address must take part in a constraint: an input in none gets a
// zero point in the verifying key, and then any value of it verifies, so a proof
// could be copied by another prover. proverSquared is that constraint.
template Square() {
    signal input prover;
    signal input y;
    signal input x;
    signal proverSquared;
    proverSquared <== prover * prover;
    y === x * x;
}
