pragma circom 2.0.0;

// Squarings(k): "I know x with x^(2^k) = y", k squarings in a row: k + 1
// constraints, so the proving work grows linearly with k.
// Public inputs, in order: prover (the address of whoever submits the proof), y.
// proverSquared binds the proof to the prover's address (see square.circom).
template Squarings(k) {
    signal input prover;
    signal input y;
    signal input x;
    signal proverSquared;
    signal s[k + 1];
    proverSquared <== prover * prover;
    s[0] <== x;
    for (var i = 0; i < k; i++) {
        s[i + 1] <== s[i] * s[i];
    }
    y === s[k];
}
