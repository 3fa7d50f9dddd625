// Small self-contained SVG line charts for the offline HTML reports (no scripts, no external
// resources).
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace crucible {

struct ChartSeries {
    std::string name;
    std::vector<double> x, y;  // NaN y values leave a gap
    int colour = -1;           // index into the palette; -1: the series' position
};

// A line chart with axes, ticks, a legend and the title; `x_label`/`y_label` name the axes.
std::string svg_line_chart(const std::string& title, const std::vector<ChartSeries>& series,
                           const std::string& x_label, const std::string& y_label, int width = 560,
                           int height = 300);

// Escapes &, <, >, " and ' for HTML text and attributes.
std::string html_escape(std::string_view text);

}  // namespace crucible
