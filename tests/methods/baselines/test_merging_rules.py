"""The merging rules of RegCL's comparison (methods/baselines/_merging.py) on small hand-made tensors."""
import pytest
import torch

from methods.baselines._merging import (dop_pair, dop_weights, gram_update, max_abs, max_abs_step,
                                        min_norm_two, reduce_non_diag, regmean, regmean_solve,
                                        regmean_sums, rnd_mix_step, svd_projection)


def test_gram_update_is_the_running_mean_of_x_t_x():
    x1 = torch.tensor([[1.0, 2.0], [0.0, 1.0]])
    x2 = torch.tensor([[[3.0, -1.0]]])  # any leading shape: rows are the last dimension's vectors
    g, n = gram_update(None, 0, x1)
    g, n = gram_update(g, n, x2)
    assert n == 3
    assert torch.allclose(g, torch.tensor([[10.0, -1.0], [-1.0, 6.0]]) / 3)


def test_regmean_of_two_domains_is_the_least_squares_solution():
    """W* minimises ||X1 W^T - X1 W1^T||^2 + ||X2 W^T - X2 W2^T||^2: with X stacked and Y stacked
    it is the least-squares solution of [X1; X2] W^T = [X1 W1^T; X2 W2^T]."""
    x1 = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 2.0]], dtype=torch.float64)
    x2 = torch.tensor([[2.0, 1.0], [0.0, 1.0]], dtype=torch.float64)
    w1 = torch.tensor([[1.0, 2.0], [0.0, -1.0], [3.0, 1.0]], dtype=torch.float64)  # (out 3, in 2)
    w2 = torch.tensor([[-1.0, 0.0], [2.0, 2.0], [1.0, -2.0]], dtype=torch.float64)
    merged = regmean([x1.T @ x1, x2.T @ x2], [w1, w2])
    x = torch.cat([x1, x2])
    y = torch.cat([x1 @ w1.T, x2 @ w2.T])
    lstsq = torch.linalg.lstsq(x, y).solution.T
    assert torch.allclose(merged, lstsq)
    # by hand: sum G = [[6, 3], [3, 7]], sum G W^T = [[0, 11, 7], [9, 3, 6]],
    # inv(sum G) = [[7, -3], [-3, 6]] / 33 -> W*^T = inv(sum G) @ sum G W^T
    expected = torch.tensor([[-27.0, 68.0, 31.0], [54.0, -15.0, 15.0]], dtype=torch.float64) / 33
    assert torch.allclose(merged, expected.T)


def test_regmean_running_sums_equal_the_batch_merge_and_alpha_scales_off_diagonals():
    g = [torch.tensor([[2.0, 1.0], [1.0, 3.0]]), torch.tensor([[1.0, -1.0], [-1.0, 4.0]])]
    w = [torch.tensor([[1.0, 2.0]]), torch.tensor([[0.5, -1.0]])]
    sums = regmean_sums(g[:1], w[:1])
    sums = regmean_sums(g[1:], w[1:], start=sums)
    assert torch.allclose(regmean_solve(*sums), regmean(g, w))
    assert torch.equal(reduce_non_diag(g[0], 0.5), torch.tensor([[2.0, 0.5], [0.5, 3.0]]))
    # alpha 0: diagonal Gram matrices, i.e. a per-input-feature weighted mean of the weights
    assert torch.allclose(regmean(g, w, alpha=0.0), torch.tensor([[(2 * 1 + 1 * 0.5) / 3, (3 * 2 - 4) / 7]]))


def test_magmax_picks_the_largest_magnitude_later_vector_winning_ties():
    a = torch.tensor([1.0, -3.0, 0.5, 2.0])
    b = torch.tensor([-2.0, 1.0, 0.25, -2.0])
    c = torch.tensor([0.5, 2.5, -0.75, 1.0])
    assert torch.equal(max_abs([a, b, c]), torch.tensor([-2.0, -3.0, -0.75, -2.0]))
    assert torch.equal(max_abs_step(max_abs_step(a, b), c), max_abs([a, b, c]))


def test_random_mix_takes_each_entry_from_one_vector_uniformly():
    g = torch.Generator().manual_seed(0)
    n, size = 4, 40000
    vectors = [torch.full((size,), float(i)) for i in range(n)]
    mix = vectors[0]
    for i in range(1, n):
        mix = rnd_mix_step(mix, vectors[i], i + 1, g)
    share = torch.stack([(mix == i).float().mean() for i in range(n)])
    assert torch.allclose(share, torch.full((n,), 0.25), atol=0.01)
    assert torch.equal(rnd_mix_step(vectors[2], vectors[3], 1, g), vectors[3])


def test_svd_projection_drops_the_last_direction_at_epsilon_one():
    """RegCL's quirk: searchsorted(cumulative share, 1.0) stops where the share reaches 1.0."""
    tv = torch.stack([torch.diag(torch.tensor([3.0, 1.0])), torch.zeros(2, 2)]).double()
    u, s, v = svd_projection(tv, 1.0)
    assert s.tolist() == [[3.0, 0.0], [0.0, 0.0]] and u.shape == v.shape == (2, 2, 2)
    # shares [0.75, 1.0]: k is the index where the share first reaches epsilon (not that index + 1)
    assert svd_projection(tv, 0.8)[1].tolist() == [[3.0, 0.0], [0.0, 0.0]]
    assert svd_projection(tv, 0.5)[1].tolist() == [[0.0, 0.0], [0.0, 0.0]]


def test_min_norm_two_matches_mgda_and_its_clamps():
    g1 = torch.tensor([[1.0, 0.0], [1.0, 0.0], [2.0, 0.0]])
    g2 = torch.tensor([[0.0, 1.0], [2.0, 0.0], [1.0, 0.0]])
    assert min_norm_two(g1, g2).tolist() == [0.5, 0.999, 0.001]


def test_dop_matches_regcls_algorithm_on_a_small_example():
    """Numbers from a standalone numpy re-implementation of RegCL's optimize_weight_dop (MGDA +
    EMA 0.99, Adam, projection space uv, svd_epsilon 1.0, which keeps 1 of the 2 directions here)
    with lr 0.05 and 3 steps."""
    pre = torch.tensor([[0.5, -0.2, 0.1], [0.0, 0.3, -0.4]], dtype=torch.float64)
    cur = torch.tensor([[0.9, -0.1, 0.3], [0.2, 0.1, -0.6]], dtype=torch.float64)
    new = torch.tensor([[0.4, 0.2, 0.0], [-0.3, 0.5, -0.1]], dtype=torch.float64)
    out = dop_weights(pre[None], cur[None], new[None], lr=0.05, num_steps=3)[0]
    expected = torch.tensor([[0.76331878, 0.1760151838, 0.2889264819],
                             [-0.197820482, 0.4457626766, -0.2068836689]], dtype=torch.float64)
    assert torch.allclose(out, expected, atol=1e-8)
    # a batch optimises each entry on its own; no steps leave the mean
    pair = dop_weights(torch.stack([pre, pre]), torch.stack([cur, new]), torch.stack([new, cur]),
                       lr=0.05, num_steps=3)
    assert torch.allclose(pair[0], expected, atol=1e-8)
    assert torch.equal(dop_weights(pre[None], cur[None], new[None], num_steps=0)[0], (cur + new) / 2)


def test_dop_pair_optimises_2d_weights_and_averages_the_rest():
    init = {"a.weight": torch.zeros(2, 2), "a.bias": torch.zeros(2)}
    one = {"a.weight": torch.eye(2), "a.bias": torch.tensor([1.0, 2.0])}
    two = {"a.weight": 2 * torch.eye(2), "a.bias": torch.tensor([3.0, 0.0])}
    out = dop_pair(init, one, two, num_steps=0)
    assert torch.equal(out["a.bias"], torch.tensor([2.0, 1.0]))
    assert torch.equal(out["a.weight"], 1.5 * torch.eye(2))
    with pytest.raises(ValueError, match="unknown DOP option"):
        dop_pair(init, one, two, steps=3)
