"""Plots of a run: what ``loss.png`` shows and where."""

from pinnopt.plots import plot_loss


def test_loss_legend_is_outside_the_data_area_and_inside_the_figure(tmp_path, saved_figures):
    saved = saved_figures
    # rel_l2 ends at the top right, where a legend placed inside the axes would go
    history = [{"step": s, "loss": 10.0 ** (-s / 20), "loss_pde": 10.0 ** (-s / 25),
                "loss_bc": 10.0 ** (-s / 30)} for s in range(101)]  # fmt: skip
    for r in history[::10]:
        r["rel_l2"] = 1.0 - r["step"] / 200
    plot_loss(history, tmp_path / "loss.png")
    assert (tmp_path / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    (fig,) = saved
    (ax,) = fig.axes
    legend = ax.get_legend()
    assert [t.get_text() for t in legend.get_texts()] == ["loss", "loss_bc", "loss_pde", "rel_l2"]
    box, data_area = legend.get_window_extent(), ax.get_window_extent()
    assert not box.overlaps(data_area), (box, data_area)
    assert fig.bbox.contains(box.x0, box.y0) and fig.bbox.contains(box.x1, box.y1)
